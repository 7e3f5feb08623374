"""`python -m floatalk ...`: the same command line as the `floatalk` script."""

import sys

from floatalk.cli import main

if __name__ == "__main__":
    sys.exit(main())
