"""``python -m orderhealth`` = the ``orderhealth`` command."""

from orderhealth.cli import main

main()
