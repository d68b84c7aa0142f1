"""The ``orderhealth`` command's entry point: the allocator first, then the CLI.

Kept apart from :mod:`orderhealth.cli` so that choosing the allocator (a
re-execution, :mod:`dataflows.allocator`) happens before the CLI's
imports, which take most of a second.
"""

from __future__ import annotations

import sys

from dataflows.allocator import AllocatorMissing, reexec_with_allocator

__all__ = ["main"]


def main() -> None:
    """Re-execute under jemalloc if wanted, then run the command line."""
    try:
        reexec_with_allocator()
    except (AllocatorMissing, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    from orderhealth.cli import main as cli_main

    cli_main()
