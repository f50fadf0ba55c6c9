"""The end-to-end test harness, one module per job (no re-exports here).

process     start/stop reclusterd, wait on conditions, log lines, worker PIDs, titles
http_client raw bytes, one GET, pipelined responses, unix sockets and TLS
ws_client   a blocking WebSocket client framed by wsproto
load        a keep-alive + fresh-connection load generator
apps        write a test app from its template in tests/apps/ (for tests that edit it)
"""
