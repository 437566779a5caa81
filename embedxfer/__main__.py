"""``python -m embedxfer``: the same as the ``embedxfer`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
