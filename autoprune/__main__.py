"""``python -m autoprune``."""

from autoprune.cli import main

main()
