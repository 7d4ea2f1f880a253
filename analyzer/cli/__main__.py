"""`python -m analyzer.cli`: the `reclaim` command."""

from analyzer.cli import main

if __name__ == "__main__":  # importing this module (pkgutil.walk_packages) runs nothing
    main()
