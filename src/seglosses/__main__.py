"""``python -m seglosses``: the command line (needs the ``cli`` extra)."""

from seglosses.cli.app import main

if __name__ == "__main__":
    main()
