"""``python -m ganarch``: the same as the ``ganarch`` command."""

from ganarch.cli import main

if __name__ == "__main__":
    main()
