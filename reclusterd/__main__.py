"""`python -m reclusterd` = the `reclusterd` command."""

import sys

from reclusterd.cli import main

if __name__ == "__main__":
    sys.exit(main())
