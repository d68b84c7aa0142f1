"""Quality gates (SPEC §6). Batch-level Great Expectations suites arrive with the quality issue."""
