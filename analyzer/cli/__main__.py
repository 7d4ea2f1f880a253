"""`python -m analyzer.cli`: the `reclaim` command."""

from analyzer.cli import main

main()
