"""Test apps as files: `python -m reclusterd tests.apps.<module>:<attr>` from the repo root."""
