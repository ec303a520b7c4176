"""``python -m locdistill`` (and ``torchrun -m locdistill``) run the command line."""

from locdistill.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
