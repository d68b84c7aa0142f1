"""Delta Lake tables of the lakehouse and their exactly-once writer (SPEC §5)."""
