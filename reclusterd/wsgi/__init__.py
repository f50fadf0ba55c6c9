"""PEP 3333 over http/: environ, handler, input, response (file wrapper), and conn, the
blocking-socket side shared by the sync and thread workers. Import from the modules."""
