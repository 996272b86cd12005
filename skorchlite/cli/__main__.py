"""``python -m skorchlite.cli``: the ``skorchlite`` program."""

import sys

from .program import run

if __name__ == "__main__":  # not when imported, as the doctest collection does
    sys.exit(run())
