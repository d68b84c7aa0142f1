"""What every ``orderhealth`` subcommand shares: the console, errors, common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["DEFAULT_LAKEHOUSE", "CliError", "Lakehouse", "console", "resolve_root"]

console = Console()
if not console.is_terminal:
    # Logs and pipes: wide enough for the health tables instead of rich's 80.
    console = Console(width=120)

DEFAULT_LAKEHOUSE = "data/lakehouse"

Lakehouse = Annotated[
    str, typer.Option("--lakehouse", help="Lakehouse root URI (directory or s3://...).")
]


class CliError(Exception):
    """An expected failure, reported as one line."""


def resolve_root(lakehouse: str) -> str:
    """An absolute path for local lakehouses; object-store URIs as given."""
    return lakehouse if "://" in lakehouse else str(Path(lakehouse).resolve())
