"""`python -m smokehouse_device`."""

import sys

from smokehouse_device.cli import main

if __name__ == "__main__":
    sys.exit(main())
