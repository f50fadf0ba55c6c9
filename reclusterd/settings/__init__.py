"""Every setting, declared once: the CLI, env vars, TOML keys and the docs are generated from it.

The validators are in settings/checks.py, the docs renderers in settings/docs.py:
`python -m reclusterd.settings --markdown` for the README reference table,
`--toml` for conf/reclusterd.toml and `--gunicorn` for README's Gunicorn table.
"""

from __future__ import annotations

from typing import Any

from reclusterd.hooks import HOOKS
from reclusterd.settings.checks import (
    check_address,
    check_addresses,
    check_allow_ips,
    check_app,
    check_env_pairs,
    check_h2_frame_size,
    check_h2_window,
    check_http_protocols,
    check_root_path,
    check_spec,
    check_tls_version,
    check_worker_class,
)
from reclusterd.settings.schema import (
    ALL_SOURCES,
    AUTO,
    ENV_PREFIX,
    Kind,
    Setting,
    Source,
    show_value,
)

__all__ = ["ALL_SOURCES", "AUTO", "BY_NAME", "DEFAULT_ACCESS_FORMAT", "ENV_PREFIX",
           "HOOK_SETTINGS", "INTERNAL_ENV", "SETTINGS", "Kind", "Setting", "Source",
           "check_address", "check_worker_class", "show_value"]

# RECLUSTERD_* variables that are not settings: the listeners handed over on USR2
# (sockets.FDS_ENV) and knobs of the bench runner and the test suite. Unknown ones warn.
INTERNAL_ENV = frozenset(("RECLUSTERD_FDS", "RECLUSTERD_BENCH_VENV", "RECLUSTERD_FUZZ_EXAMPLES"))
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

def _s(name: str, kind: Kind, default: Any, help: str, *flags: str, **kw: Any) -> Setting:
    return Setting(name, kind, default, help, tuple(flags), **kw)


_NOT_FILE: frozenset[Source] = frozenset(("cli", "env"))
_LOGS = ("debug", "info", "warning", "error", "critical")

SETTINGS: tuple[Setting, ...] = (
    _s("app", "str", None, "The application: module:attr (dotted attr; module alone means "
       "attr 'app'). Given as the positional APP.", validator=check_app, reloadable=False,
       metavar="APP", example="examples.hello:app", required=True),
    _s("workers", "int", None, "Number of worker processes.", "-w", "--workers", minimum=1,
       metavar="N", example=4, default_doc="$WEB_CONCURRENCY, else the CPU count",
       required=True),
    _s("bind", "list", ("127.0.0.1:8000",), "Address to listen on: HOST:PORT, [::1]:PORT, "
       "unix:PATH or fd://N; repeatable. systemd LISTEN_FDS is used when set.",
       "-b", "--bind", validator=check_addresses, reloadable=False, metavar="ADDR"),
    _s("worker_class", "str", "auto", "Worker type: sync, thread, asyncio or module:Class; "
       "auto = thread for WSGI, asyncio for ASGI.", "-k", "--worker-class",
       validator=check_worker_class, metavar="CLASS"),
    _s("threads", "int", AUTO, "Thread pool size of a thread worker: auto = a pool that grows "
       "while every thread is blocked in a request, up to min(--worker-connections, 256), "
       "and shrinks when idle; N = exactly N threads.", "--threads", minimum=1,
       metavar="N|auto", auto=True, default_doc="auto"),
    _s("worker_connections", "int", 1000, "Max open connections per thread/asyncio worker.",
       "--worker-connections", minimum=1, metavar="N"),
    _s("http", "str", "httptools", "HTTP parser: httptools or h11 (pure Python).", "--http",
       choices=("httptools", "h11")),
    _s("loop", "str", "auto", "Event loop for asyncio workers: auto (uvloop if installed), "
       "asyncio or uvloop.", "--loop", choices=("auto", "asyncio", "uvloop")),
    _s("timeout", "float", 30.0, "A serving worker silent this many seconds is killed and "
       "replaced (its stack logged first); 0 = off.", "-t", "--timeout", minimum=0,
       metavar="S"),
    _s("boot_timeout", "float", 60.0, "A new worker not ready this many seconds after fork "
       "counts as failed to boot.", "--boot-timeout", minimum=0, metavar="S"),
    _s("graceful_timeout", "float", 30.0, "Seconds given to in-flight requests on "
       "TERM/HUP/TTOU/recycle.", "--graceful-timeout", minimum=0, metavar="S"),
    _s("keep_alive", "float", 5.0, "Idle keep-alive connection timeout (seconds); 0 = "
       "every response says Connection: close and the connection closes after it.",
       "--keep-alive", minimum=0, metavar="S"),
    _s("header_timeout", "float", 20.0, "The request head must arrive within this many seconds "
       "of its first byte, else 408 and close; also the idle limit for a new connection's "
       "first byte, each body read and each response write. 0 = off: no head deadline (with "
       "-k sync one silent client then holds the worker), body reads and writes still stop "
       "after 20 s without progress.", "--header-timeout", minimum=0, metavar="S"),
    _s("max_requests", "int", 0, "Recycle a worker after this many requests; 0 = off.",
       "--max-requests", minimum=0, metavar="N"),
    _s("max_requests_jitter", "int", 0, "Add a random 0..N to --max-requests per worker.",
       "--max-requests-jitter", minimum=0, metavar="N"),
    _s("max_worker_memory", "int", 0, "Recycle a worker whose RSS passes this many MB; "
       "0 = off.", "--max-worker-memory", minimum=0, metavar="MB"),
    _s("backoff", "float", 10.0, "Ceiling of the respawn delay (seconds).", "--backoff",
       minimum=0, metavar="S"),
    _s("config", "str", None, "Config file: TOML (keys are setting names) or a Gunicorn "
       ".py file (see Coming from Gunicorn).", "-c", "--config",
       reloadable=False, sources=_NOT_FILE, metavar="FILE"),
    _s("check_config", "bool", False, "Load the config and the app, report, exit 0 (or 1).",
       "--check-config", reloadable=False, sources=_NOT_FILE),
    _s("chdir", "str", None, "Change to this directory (and import the app from it).",
       "--chdir", metavar="DIR", example="/srv/app"),
    _s("pid", "str", None, "Write the arbiter's PID to this file.", "-p", "--pid",
       reloadable=False, metavar="FILE", example="/run/reclusterd.pid"),
    _s("name", "str", None, "Process title name (replaces APP in the titles).", "-n",
       "--name", metavar="NAME", example="myapp"),
    _s("access_logfile", "str", None, "Access log file; '-' = stdout; unset = no access log.",
       "--access-logfile", metavar="FILE", example="-"),
    _s("access_logformat", "str", DEFAULT_ACCESS_FORMAT, "Access log format (Gunicorn's "
       "%(h)s atoms) or 'json'.", "--access-logformat", metavar="FORMAT"),
    _s("error_logfile", "str", None, "Error log file; '-' or unset = stderr.",
       "--error-logfile", "--log-file", metavar="FILE", example="-"),
    _s("log_level", "str", "info", "Error log level: debug, info, warning, error or critical.",
       "--log-level", choices=_LOGS),
    _s("certfile", "str", None, "TLS certificate (PEM); enables TLS on every bind.",
       "--certfile", reloadable=False, metavar="FILE", example="/etc/ssl/cert.pem"),
    _s("keyfile", "str", None, "TLS private key (PEM).", "--keyfile", reloadable=False,
       metavar="FILE", example="/etc/ssl/key.pem"),
    _s("ca_certs", "str", None, "CA bundle to verify client certificates.", "--ca-certs",
       reloadable=False, metavar="FILE", example="/etc/ssl/ca.pem"),
    _s("ciphers", "str", None, "TLS cipher string (OpenSSL format).", "--ciphers",
       reloadable=False, metavar="CIPHERS", example="ECDHE+AESGCM"),
    _s("keyfile_password", "str", None, "Password of an encrypted --keyfile.",
       "--keyfile-password", reloadable=False, metavar="PASSWORD", example="s3cret"),
    _s("ssl_min_version", "str", "TLSv1.2", "Oldest TLS version accepted: TLSv1.2 or TLSv1.3 "
       "(1.2 and 1.3 work too).", "--ssl-min-version", validator=check_tls_version,
       reloadable=False, metavar="VERSION"),
    _s("cert_reqs", "str", None, "Client certificates (checked against --ca-certs): none, "
       "optional (verified when sent) or required (handshake fails without one); Gunicorn's "
       "0, 1, 2 (ssl.CERT_*) mean the same.",
       "--cert-reqs", choices=("none", "optional", "required"), reloadable=False,
       aliases=(("0", "none"), ("1", "optional"), ("2", "required")),
       example="required", default_doc="optional with --ca-certs, else none"),
    _s("forwarded_allow_ips", "list", ("127.0.0.1", "::1"), "Peers (IPs, CIDRs, '*') whose "
       "X-Forwarded-For/-Proto and Forwarded headers are believed; comma-separated.",
       "--forwarded-allow-ips", validator=check_allow_ips, metavar="LIST"),
    _s("limit_request_line", "int", 8190, "Max request line bytes (over: 414).",
       "--limit-request-line", minimum=0, metavar="N"),
    _s("limit_request_fields", "int", 100, "Max number of request headers (over: 431).",
       "--limit-request-fields", minimum=0, metavar="N"),
    _s("limit_request_field_size", "int", 8190, "Max bytes of one request header (over: 431).",
       "--limit-request-field-size", "--limit-request-field_size", minimum=0, metavar="N"),
    _s("limit_request_body", "int", 0, "Max request body bytes (over: 413); 0 = off.",
       "--limit-request-body", minimum=0, metavar="N"),
    _s("status_bind", "str", None, "Address of the arbiter's status server: /metrics, /livez, "
       "/readyz.", "--status-bind", validator=check_address, reloadable=False, metavar="ADDR",
       example="127.0.0.1:9000"),
    _s("shutdown_delay", "float", 0.0, "On TERM, report not-ready and keep serving this many "
       "seconds before draining.", "--shutdown-delay", minimum=0, metavar="S"),
    _s("factory", "bool", False, "APP is a callable returning the application.", "--factory"),
    _s("lifespan", "str", "auto", "ASGI lifespan: auto, on or off.", "--lifespan",
       choices=("auto", "on", "off")),
    _s("ws", "str", "auto", "WebSocket for ASGI: auto (on if wsproto is installed), "
       "wsproto (required: boot error without it) or none.", "--ws",
       choices=("auto", "wsproto", "none")),
    _s("post_fork", "str", None, "Hook module:func(info) run in each worker after fork, "
       "before the app is loaded; info has .pid, .ppid, .generation, .cfg (the settings) "
       "and .log (the error logger); raising = boot error.",
       "--post-fork", validator=check_spec, metavar="SPEC", example="myapp.hooks:post_fork"),
    _s("pre_request", "str", None, "Hook module:func(worker, environ) called before each "
       "request: worker is the serving worker (.pid, .generation, .cfg, .log), environ the WSGI "
       "environ (ASGI: the scope); raising is logged, the request goes on.",
       "--pre-request", validator=check_spec, metavar="SPEC", example="myapp.hooks:pre_request"),
    _s("post_request", "str", None, "Hook module:func(worker, environ, status) called after "
       "each response; status is the int status code, environ as for --pre-request (ASGI: "
       "the scope); raising is logged.",
       "--post-request", validator=check_spec, metavar="SPEC",
       example="myapp.hooks:post_request"),
    *(_s(h.name, "str", None, f"Hook module:func({', '.join(h.gunicorn_args)}) called "
         f"{h.when}; arguments as in Gunicorn.", "--" + h.name.replace("_", "-"),
         validator=check_spec, metavar="SPEC", example=f"myapp.hooks:{h.name}")
      for h in HOOKS if h.native_args is None),
    _s("env_file", "str", None, "Environment for the app from this dotenv file (KEY=VALUE "
       "lines), set in the arbiter before workers fork; re-read on HUP.", "--env-file",
       metavar="FILE", example=".env"),
    _s("env", "list", (), "Environment for the app: KEY=VALUE, repeatable (one per line in "
       "RECLUSTERD_ENV); wins over --env-file.", "-e", "--env", validator=check_env_pairs,
       metavar="KEY=VALUE", separator="\n"),
    _s("reuse_port", "bool", False, "Set SO_REUSEPORT on the listeners.", "--reuse-port",
       reloadable=False),
    _s("backlog", "int", 2048, "Listen backlog.", "--backlog", minimum=1, reloadable=False,
       metavar="N"),
    _s("preload", "bool", False, "Load the app in the arbiter before forking.", "--preload"),
    _s("user", "str", None, "Switch workers to this user (name or uid) after binding.",
       "-u", "--user", reloadable=False, metavar="USER", example="www-data"),
    _s("group", "str", None, "Switch workers to this group (name or gid) after binding.",
       "-g", "--group", reloadable=False, metavar="GROUP", example="www-data"),
    _s("umask", "umask", None, "umask of the processes (octal, e.g. 022); a unix socket's mode is "
       "0777 minus it. Unset: processes keep theirs, unix sockets get 0777.", "-m", "--umask",
       reloadable=False, metavar="MASK", example="022"),
    _s("reload", "bool", False, "Development: a changed file under --reload-dir starts a "
       "reload, health-gated as HUP (an edit that breaks the app leaves the last good code "
       "serving). Needs watchfiles: pip install 'reclusterd[reload]'. Not with --preload.",
       "--reload", reloadable=False),
    _s("reload_dir", "list", (), "Directory watched by --reload; repeatable.", "--reload-dir",
       reloadable=False, metavar="DIR", default_doc="--chdir, else the current directory"),
    _s("reload_include", "list", (), "Glob of the files --reload watches, added to the "
       "default; repeatable. Without '/' it matches the file name, with '/' the path "
       "under --reload-dir.", "--reload-include", reloadable=False, metavar="GLOB",
       default_doc="`*.py`"),
    _s("reload_exclude", "list", (), "Glob --reload ignores (a file name or any directory "
       "on the path), added to the defaults; repeatable. A default named in "
       "--reload-include (or *.py here) is dropped.", "--reload-exclude", reloadable=False,
       metavar="GLOB", default_doc="`.venv`, `venv`, `__pycache__`, `.git`, `.hg`, "
       "`node_modules`, tool caches, `*.pyc`, editor swap and backup files"),
    _s("log_config", "str", None, "Logging config applied on top of the built-in one "
       "(master and workers; re-applied on HUP): dictConfig from .json or .toml, fileConfig "
       "from .ini or .conf. Its loggers: reclusterd.error, reclusterd.access (access lines "
       "go there when this is set).", "--log-config", metavar="FILE",
       example="/etc/reclusterd/logging.json"),
    _s("ws_max_size", "int", 16 * 1024 * 1024, "Max bytes of one incoming WebSocket message; "
       "a frame header announcing more closes with 1009 at once.", "--ws-max-size",
       minimum=1, metavar="N", default_doc="16777216 (16 MiB)"),
    _s("ws_ping_interval", "float", 20.0, "Seconds between the keep-alive pings the server "
       "sends on each WebSocket; 0 = off.", "--ws-ping-interval", minimum=0, metavar="S"),
    _s("ws_ping_timeout", "float", 20.0, "Seconds to wait for the pong to a keep-alive ping; "
       "then close 1011 and drop the connection. 0 = never.", "--ws-ping-timeout",
       minimum=0, metavar="S"),
    _s("ws_per_message_deflate", "bool", True, "Accept the permessage-deflate WebSocket "
       "extension (RFC 7692) when the client offers it.", "--ws-per-message-deflate",
       takes_value=True, metavar="BOOL"),
    _s("control_socket", "str", None, "Unix socket (mode 0600) for `reclusterd ctl`. Default: "
       "beside --pid (app.pid -> app.ctl), else $XDG_RUNTIME_DIR/reclusterd/MASTERPID.ctl "
       "(/run/reclusterd as root, else TMPDIR/reclusterd-UID); off = none.",
       "--control-socket", reloadable=False, metavar="PATH", example="/run/app.ctl"),
    _s("proxy_protocol", "bool", False, "Expect a PROXY protocol v1 or v2 header (HAProxy "
       "send-proxy, AWS NLB) first on every connection, before TLS: it names the client "
       "(REMOTE_ADDR, scope client, access log). Required when on: a connection without "
       "one, with a bad one, or from a peer not in --proxy-allow-ips is closed and logged.",
       "--proxy-protocol"),
    _s("proxy_allow_ips", "list", ("127.0.0.1", "::1"), "Peers (IPs, CIDRs, '*') allowed to "
       "send a PROXY protocol header; comma-separated.", "--proxy-allow-ips",
       "--proxy-allow-from", validator=check_allow_ips, metavar="LIST"),
    _s("root_path", "str", "", "Mount prefix of the app (a proxy forwards /PREFIX/...): WSGI "
       "SCRIPT_NAME, ASGI root_path; a request path under it gives PATH_INFO the rest. "
       "Unset: the SCRIPT_NAME environment variable, as in Gunicorn.", "--root-path",
       validator=check_root_path, metavar="PATH", default_doc="$SCRIPT_NAME, else empty"),
    _s("server_header", "bool", True, "Add `Server: reclusterd` to responses that have "
       "none (an app's own Server header always wins).", "--server-header"),
    _s("date_header", "bool", True, "Add a Date header to responses that have none (an "
       "app's own Date header always wins).", "--date-header"),
    _s("http_protocols", "list", ("h1", "h2"), "HTTP versions offered: h1, h2. h2 is "
       "negotiated by ALPN on TLS binds (asyncio and thread workers; the sync worker speaks "
       "HTTP/1 only); plain binds speak HTTP/1 unless --http2-cleartext.",
       "--http-protocols", validator=check_http_protocols, reloadable=False,
       metavar="LIST"),
    _s("http2_cleartext", "str", "off", "h2c on plain binds, for peers in "
       "--forwarded-allow-ips only (a TLS-terminating proxy speaking HTTP/2 upstream): "
       "prior-knowledge (the connection opens with the HTTP/2 preface), upgrade "
       "(an HTTP/1.1 request with `Upgrade: h2c` is answered 101 and on stream 1), both, or "
       "off. Needs h2 in --http-protocols; asyncio and thread workers (sync: HTTP/1 only).",
       "--http2-cleartext", choices=("off", "prior-knowledge", "upgrade", "both"),
       reloadable=False, metavar="MODE"),
    _s("http2_max_concurrent_streams", "int", 100, "HTTP/2 streams a client may have open "
       "on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with "
       "REFUSED_STREAM.", "--http2-max-concurrent-streams", minimum=1, metavar="N"),
    _s("http2_initial_window_size", "int", 65535, "HTTP/2 flow-control window (bytes) per "
       "stream: the most request body a stream holds in memory before the app reads it.",
       "--http2-initial-window-size", minimum=1, validator=check_h2_window, metavar="N"),
    _s("http2_max_frame_size", "int", 16384, "Largest HTTP/2 frame payload (bytes) a client "
       "may send (16384..16777215).", "--http2-max-frame-size",
       validator=check_h2_frame_size, metavar="N"),
    _s("http2_max_header_list_size", "int", 65536, "Max bytes of one HTTP/2 request's "
       "decoded header list (RFC 9113 §6.5.2; HPACK bomb defence); over it the connection "
       "is closed.", "--http2-max-header-list-size", minimum=1, metavar="N"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# The settings that hold a server hook's module:func spec (hooks.HOOKS order).
HOOK_SETTINGS: tuple[str, ...] = tuple(h.name for h in HOOKS)
