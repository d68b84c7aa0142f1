"""Generated documentation stays in sync with its source."""

from __future__ import annotations

from pathlib import Path

from dataflows.metrics import components_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_metric_table_in_docs_matches_the_catalogue() -> None:
    text = (DOCS / "metrics.md").read_text()
    section = text.split("<!-- components:begin -->\n", 1)[1].split("<!-- components:end -->", 1)[0]
    assert section.strip() == components_markdown().strip()
