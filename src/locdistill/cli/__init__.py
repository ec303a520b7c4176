"""The ``locdistill`` command line (also ``python -m locdistill`` and ``torchrun -m locdistill``).

``parser.py`` defines the arguments (one function per sub-command), ``commands.py`` the sub-commands,
``main.py`` the entry point with its one-line error reporting.
"""

from locdistill.cli.main import COMMANDS, main
from locdistill.cli.parser import build_parser

__all__ = ["COMMANDS", "build_parser", "main"]
