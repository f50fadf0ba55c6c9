"""Gunicorn's setting names -> ours: the one table of equivalences for `-c gunicorn.conf.py`.

Each row names a Gunicorn setting and either the reclusterd setting it becomes (with a
value conversion where the two differ) or why there is none. A setting without an
equivalent is an error naming it, unless its value is Gunicorn's default (then it
asks for nothing) or ignoring it is harmless (a warning). README's "Coming from
Gunicorn" table is rendered from this one (`python -m reclusterd.settings --gunicorn`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reclusterd import workerclasses

_UNSET = object()


def _as_list(value: Any) -> Any:
    """Gunicorn takes a string or a list where we take a list (bind, raw_env)."""
    return [value] if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _name_or_id(value: Any) -> Any:
    """Gunicorn's user/group may be a uid/gid number; ours is a string of either."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


_CERT_REQS = {0: "none", 1: "optional", 2: "required"}   # ssl.CERT_NONE/OPTIONAL/REQUIRED


def _cert_reqs(value: Any) -> Any:
    """ssl.CERT_* (an int, as Gunicorn takes it) -> none/optional/required."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in _CERT_REQS:
            raise ValueError(f"must be ssl.CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED, "
                             f"got {value!r}")
        return _CERT_REQS[value]
    return value


def _proxy_mode(value: Any) -> Any:
    """Gunicorn's proxy_protocol (off, v1, v2, auto; a bool before 24.1) -> our bool."""
    if isinstance(value, str) and value.lower() in ("off", "v1", "v2", "auto"):
        return value.lower() != "off"
    return value


GUNICORN_WORKERS: dict[str, str] = {"sync": "sync", "gthread": "thread",
            "uvicorn.workers.UvicornWorker": "asyncio",
            "uvicorn.workers.UvicornH11Worker": "asyncio",
            "uvicorn_worker.UvicornWorker": "asyncio",
            "uvicorn_worker.UvicornH11Worker": "asyncio"}
_GREEN = ("gevent", "eventlet", "tornado", "gaiohttp")


def worker_class(value: Any) -> Any:
    """Gunicorn worker class names -> ours; ours (thread, asyncio, module:Class) pass.
    Used for a .py config and for --worker-class/-k itself (a pasted `-k gthread`)."""
    if not isinstance(value, str):
        return value
    name = value.removeprefix("egg:gunicorn#")
    if name in GUNICORN_WORKERS:
        return GUNICORN_WORKERS[name]
    if name in workerclasses.NAMES or ":" in name:
        return name
    if any(g in name.lower() for g in _GREEN):
        raise ValueError(f"{value!r}: green-thread workers are not supported; use "
                         "gthread/thread (WSGI) or asyncio (ASGI)")
    raise ValueError(f"{value!r} is a Gunicorn worker class; reclusterd takes sync, gthread, "
                     "uvicorn.workers.UvicornWorker or a reclusterd plug-in as module:Class")


@dataclass(frozen=True)
class Equivalent:
    """One Gunicorn setting. ours None: no equivalent (error, or warning if harmless)."""

    gunicorn: str
    ours: str | None
    note: str = ""
    convert: Callable[[Any], Any] | None = None
    default: Any = _UNSET      # Gunicorn's default: asks for nothing, so always accepted
    harmless: bool = False     # without an equivalent: warn and ignore instead of failing

    def is_default(self, value: Any) -> bool:
        return self.default is not _UNSET and value == self.default


def _eq(gunicorn: str, ours: str | None = None, note: str = "", **kw: Any) -> Equivalent:
    return Equivalent(gunicorn, ours if ours is not None else gunicorn, note, **kw)


def _no(gunicorn: str, default: Any, note: str, harmless: bool = False) -> Equivalent:
    return Equivalent(gunicorn, None, note, default=default, harmless=harmless)


_SCHEME_HEADERS = {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
                   "X-FORWARDED-SSL": "on"}

EQUIVALENTS: tuple[Equivalent, ...] = (
    _eq("wsgi_app", "app", "the APP argument wins over it"),
    _eq("bind", convert=_as_list),
    _eq("backlog"),
    _eq("workers"),
    _eq("worker_class", note="sync, gthread -> thread, uvicorn's UvicornWorker -> asyncio",
        convert=worker_class),
    _eq("threads"),
    _eq("worker_connections"),
    _eq("max_requests"),
    _eq("max_requests_jitter"),
    _eq("timeout"),
    _eq("graceful_timeout"),
    _eq("keepalive", "keep_alive"),
    _eq("limit_request_line"),
    _eq("limit_request_fields"),
    _eq("limit_request_field_size"),
    _eq("preload_app", "preload"),
    _eq("reuse_port"),
    _eq("chdir"),
    _eq("raw_env", "env", convert=_as_list),
    _eq("pidfile", "pid"),
    _eq("user", convert=_name_or_id),
    _eq("group", convert=_name_or_id),
    _eq("umask"),
    _eq("forwarded_allow_ips"),
    _eq("proxy_protocol", note="off -> false; v1, v2, auto, true -> true (v1 and v2 "
        "both accepted; the header is then required)", convert=_proxy_mode,
        default="off"),
    _eq("proxy_allow_ips"),
    _eq("accesslog", "access_logfile"),
    _eq("access_log_format", "access_logformat"),
    _eq("errorlog", "error_logfile"),
    _eq("loglevel", "log_level", convert=_lower),
    _eq("logconfig", "log_config", default=None),
    _eq("logconfig_json", "log_config", default=None),
    _eq("proc_name", "name"),
    _eq("certfile"),
    _eq("keyfile"),
    _eq("ca_certs"),
    _eq("ciphers"),
    _eq("cert_reqs", note="ssl.CERT_NONE/OPTIONAL/REQUIRED -> none/optional/required",
        convert=_cert_reqs),
    _eq("reload", default=False),
    _no("ssl_version", None, "use ssl_min_version (default TLS 1.2)", harmless=True),
    _no("config", None, "a config file does not name another one", harmless=True),
    _no("worker_tmp_dir", None, "workers report over a pipe, not a temp file", harmless=True),
    _no("capture_output", False, "worker output goes to the arbiter's stderr", harmless=True),
    _no("sendfile", None, "files are sent with socket.sendfile where it helps", harmless=True),
    _no("reload_engine", "auto", "--reload uses watchfiles", harmless=True),
    _no("tmp_upload_dir", None, "unused by Gunicorn too", harmless=True),
    _no("enable_stdio_inheritance", False, "stdio is inherited", harmless=True),
    _no("default_proc_name", "", "process titles use --name or APP", harmless=True),
    _no("suppress_ragged_eofs", True, "Python's default is kept", harmless=True),
    _no("do_handshake_on_connect", False, "handshakes happen in the worker", harmless=True),
    _no("disable_redirect_access_to_syslog", False, "no syslog", harmless=True),
    _no("syslog_prefix", None, "no syslog", harmless=True),
    _no("syslog_facility", "user", "no syslog", harmless=True),
    _no("syslog_addr", None, "no syslog", harmless=True),
    _no("dogstatsd_tags", "", "no statsd", harmless=True),
    _no("statsd_prefix", "", "no statsd", harmless=True),
    _no("daemon", False, "run under systemd, a container or a supervisor"),
    _no("spew", False, "not supported"),
    _no("check_config", False, "use --check-config on the command line"),
    _no("print_config", False, "use --check-config on the command line"),
    _no("initgroups", False, "supplementary groups are not set"),
    _no("reload_extra_files", [], "use --reload-include"),
    _no("secure_scheme_headers", _SCHEME_HEADERS, "X-Forwarded-Proto and Forwarded are "
        "believed from forwarded_allow_ips"),
    _no("forwarder_headers", "SCRIPT_NAME,PATH_INFO", "use --root-path"),
    _no("logger_class", "gunicorn.glogging.Logger", "use logconfig"),
    _no("logconfig_dict", {}, "put it in a JSON or TOML file for logconfig"),
    _no("syslog", False, "log to stderr and let journald/the platform collect it"),
    _no("statsd_host", None, "use --status-bind (Prometheus /metrics)"),
    _no("pythonpath", None, "set PYTHONPATH, or --chdir"),
    _no("paste", None, "PasteDeploy is not supported"),
    _no("raw_paste_global_conf", [], "PasteDeploy is not supported"),
    _no("ssl_context", None, "use certfile, keyfile, ca_certs, cert_reqs, ssl_min_version"),
    _no("permit_obsolete_folding", False, "requests are parsed strictly (RFC 9112)"),
    _no("strip_header_spaces", False, "requests are parsed strictly (RFC 9112)"),
    _no("permit_unconventional_http_method", False, "requests are parsed strictly"),
    _no("permit_unconventional_http_version", False, "requests are parsed strictly"),
    _no("casefold_http_method", False, "requests are parsed strictly"),
    _no("tolerate_dangerous_framing", False, "requests are parsed strictly"),
    _no("header_map", "drop", "headers with '_' are dropped, as Gunicorn's default"),
)
BY_GUNICORN: dict[str, Equivalent] = {e.gunicorn: e for e in EQUIVALENTS}


def render_markdown() -> str:
    """README's table of Gunicorn config-file settings and what each becomes."""
    rows = ["| Gunicorn | reclusterd | notes |", "|---|---|---|"]
    for e in EQUIVALENTS:
        if e.ours is not None:
            ours = f"`{e.ours}`"
        else:
            ours = "ignored (warning)" if e.harmless else "error"
            if e.default is not _UNSET:
                ours += f", unless `{e.default!r}`" if not e.harmless else ""
        rows.append(f"| `{e.gunicorn}` | {ours} | {e.note} |")
    return "\n".join(rows) + "\n"
