"""Build Great Expectations Data Docs (static HTML) from recorded gate runs.

The gate runs on an ephemeral GX context inside the flow, so GX's own stores
hold nothing afterwards.  Every run's full GX result is kept in
``quality/validation_runs.result``; this module loads the newest of them into
a fresh context together with the reviewed suites and lets GX render them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from lakehouse.reader import read_table
from lakehouse.tables import VALIDATION_RUNS
from quality.suites import SUITES, suite_path

__all__ = ["build_data_docs"]

SITE = "orderhealth"


def build_data_docs(
    root: str,
    out_dir: Path,
    *,
    last: int = 200,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, int]:
    """Render the suites and the ``last`` gate runs; returns (index.html, runs rendered)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    out_dir = out_dir.resolve()
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        SITE,
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(out_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for name in SUITES:
        context.suites.add(gx.ExpectationSuite(**json.loads(suite_path(name).read_text())))

    runs = read_table(root, VALIDATION_RUNS).to_pylist()
    runs = [r for r in runs if r["result"]]
    runs.sort(key=lambda r: r["validated_at"])
    runs = runs[-last:]
    schema = ExpectationSuiteValidationResultSchema()
    for index, run in enumerate(runs, 1):
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=run["suite"]),
            run_id=RunIdentifier(run_name=run["run_id"], run_time=run["validated_at"]),
            batch_identifier=run["batch_id"],
        )
        result = schema.load(json.loads(run["result"]))
        result.meta["run_id"] = key.run_id  # shown as the page's run name
        context.validation_results_store.set(key, result)
        if on_progress is not None:
            on_progress(index, len(runs))
    context.build_data_docs(site_names=[SITE])
    return out_dir / "index.html", len(runs)
