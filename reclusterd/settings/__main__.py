"""`python -m reclusterd.settings --markdown | --toml | --gunicorn` (settings/docs.py)."""

import sys

from reclusterd.settings.docs import main

sys.exit(main())
