"""``python -m hetnic``: the ``hetnic`` command line of :mod:`hetnic.cli`."""

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
