"""Generated documentation stays in sync with its source."""

from __future__ import annotations

from pathlib import Path

from dataflows.metrics import components_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_metric_table_in_docs_matches_the_catalogue() -> None:
    text = (DOCS / "metrics.md").read_text()
    section = text.split("<!-- components:begin -->\n", 1)[1].split("<!-- components:end -->", 1)[0]
    assert section.strip() == components_markdown().strip()


def test_reviewed_suite_files_match_the_catalogue() -> None:
    """The gate loads quality/expectations/*.json; `make schema` regenerates them."""
    from quality.suites import SUITES, render, suite_path

    for name in SUITES:
        assert suite_path(name).read_text() == render(name), f"run `make schema` ({name})"


def test_every_bounded_component_is_checked_by_the_suite() -> None:
    from dataflows.metrics import COMPONENTS
    from quality.suites import health_metrics_suite

    checked = {
        e["kwargs"].get("column")
        for e in health_metrics_suite()["expectations"]
        if e["type"] == "expect_column_values_to_be_between" and e["severity"] == "critical"
    }
    bounded = {c.name for c in COMPONENTS if c.valid_range != (None, None)}
    assert bounded and bounded | {"health_index"} == checked
