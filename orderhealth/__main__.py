"""``python -m orderhealth`` = the ``orderhealth`` command."""

from orderhealth.entry import main

main()
