"""The `reclusterd` command: argv -> Config -> Arbiter. Errors are one line, never a traceback."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence

from reclusterd import appenv, config, gunicorn_conf, logconfig, tls, workerclasses
from reclusterd.apploader import AppLoadError, import_class, load_app, load_hooks
from reclusterd.settings import BY_NAME

USAGE_EXIT = 2    # bad command line / config value
CHECK_FAILED = 1  # --check-config found a problem


def _err(message: str, level: str = "error") -> None:
    sys.stderr.write(f"reclusterd: {level}: {message}\n")
    sys.stderr.flush()


def _check_mode(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """--check-config asked for, even if the rest of the command line is bad."""
    env = environ.get(BY_NAME["check_config"].env, "").strip().lower()
    return "--check-config" in argv or env in ("1", "true", "yes", "on")


def check_config(cfg: config.Config) -> int:
    """Load the app and everything importable the config names; print a short report."""
    try:
        loaded = load_app(cfg)
        load_hooks(cfg)
        if ":" in cfg.worker_class:
            import_class(cfg.worker_class, "--worker-class")
        try:
            secure = tls.ssl_context(tls.TLSOptions.of(cfg, tls.HTTP1_ALPN)) is not None
        except tls.TLSError as e:
            raise AppLoadError(str(e)) from None
    except AppLoadError as e:
        if e.traceback:
            sys.stderr.write(e.traceback.rstrip() + "\n")
        _err(e.message)
        return CHECK_FAILED
    worker = workerclasses.resolve(cfg.worker_class, loaded.kind)
    problem = _boot_problem(cfg, loaded.kind, worker)
    if problem:
        _err(problem)
        return CHECK_FAILED
    print("reclusterd: config OK")
    print(f"  config file: {cfg.config or '(none)'}")
    kind = "ASGI 2, wrapped as ASGI 3" if loaded.asgi2 else loaded.kind.upper()
    print(f"  app:         {cfg.app} ({kind}{', factory' if cfg.factory else ''})")
    print(f"  workers:     {cfg.workers} x {worker}")
    print(f"  bind:        {', '.join(cfg.bind)}{' (TLS)' if secure else ''}")
    for label, text in _report(cfg, loaded.kind, secure):
        print(f"  {label + ':':<12} {text}")
    return 0


def _boot_problem(cfg: config.Config, kind: str, worker: str) -> str | None:
    """What would make every worker fail to boot, found without starting one: the worker
    class against the app's kind (workers.boot's own check), --proxy-protocol on uvloop."""
    from reclusterd.workers.boot import BootError, resolve_worker_class

    try:
        resolve_worker_class(cfg.worker_class, kind)
    except BootError as e:
        return str(e)
    if worker == "asyncio" and cfg.proxy_protocol and cfg.loop == "uvloop":
        return ("--proxy-protocol runs on the asyncio loop (uvloop reads a connection "
                "before the PROXY header can be taken off it): use --loop auto or asyncio")
    return None


def _report(cfg: config.Config, kind: str, secure: bool) -> list[tuple[str, str]]:
    """The report lines after bind, each only when it says something: the settings
    groups a user most often gets wrong (TLS, WebSocket, reload, env, logging, hooks)."""
    out: list[tuple[str, str]] = []
    if secure:
        reqs = cfg.cert_reqs or ("optional" if cfg.ca_certs else "none")
        out.append(("tls", f"{cfg.ssl_min_version} or newer, client certificates {reqs}"
                    + (", key password set" if cfg.keyfile_password else "")
                    + (f", ciphers {cfg.ciphers}" if cfg.ciphers else "")))
    if cfg.status_bind:
        out.append(("status", cfg.status_bind))
    if cfg.proxy_protocol:
        out.append(("proxy", "PROXY protocol v1/v2 required from "
                    + ", ".join(cfg.proxy_allow_ips)))
    if cfg.root_path:
        out.append(("root path", cfg.root_path))
    if not (cfg.server_header and cfg.date_header):
        off = [h for h, on in (("Server", cfg.server_header), ("Date", cfg.date_header))
               if not on]
        out.append(("headers", f"no {' or '.join(off)} header added"))
    if kind == "asgi" and "h2" in cfg.http_protocols:
        out.append(("http/2", "ALPN h2 on TLS binds" + (
            f", h2c ({cfg.http2_cleartext}) from --forwarded-allow-ips peers"
            if cfg.http2_cleartext != "off" else "")))
    if kind == "asgi":
        out.append(("websocket", _websocket(cfg)))
    if cfg.reload:
        from reclusterd.arbiter.reloader import patterns_for

        pat = patterns_for(cfg)
        out.append(("reload", f"{', '.join(pat.include)} under {', '.join(pat.dirs)} "
                    f"(excluding {', '.join(pat.exclude[:3])} and {len(pat.exclude) - 3} more)"))
    names = sorted(appenv.app_environ(cfg))
    if names:      # names only: the values are often secrets
        source = ", ".join(filter(None, (cfg.env_file, "-e" if cfg.env else "")))
        out.append(("env", f"{', '.join(names)} (from {source})"))
    if cfg.log_config:
        out.append(("log config", f"{cfg.log_config} ({logconfig.read(cfg.log_config).kind})"))
    found = config.hook_specs(cfg)
    if found:
        out.append(("hooks", ", ".join(_describe_hook(cfg, n, s) for n, s in found.items())))
    return out


def _websocket(cfg: config.Config) -> str:
    """`wsproto, messages up to 16 MiB, pings every 20 s (pong within 20 s), deflate on`."""
    if cfg.ws == "none":
        return "off (--ws none)"
    if importlib.util.find_spec("wsproto") is None:
        return "off (wsproto is not installed)"
    size = cfg.ws_max_size
    shown = f"{size // 2**20} MiB" if size % 2**20 == 0 else f"{size} bytes"
    ping = "no pings"
    if cfg.ws_ping_interval:
        ping = f"pings every {cfg.ws_ping_interval:g} s (" + (
            f"pong within {cfg.ws_ping_timeout:g} s)" if cfg.ws_ping_timeout else "no timeout)")
    return (f"wsproto, messages up to {shown}, {ping}, "
            f"permessage-deflate {'on' if cfg.ws_per_message_deflate else 'off'}")


def _try_log_config(cfg: config.Config) -> str | None:
    """Apply --log-config once (what config load cannot check: handler classes, files
    handlers open...); the one-line problem, or None. The master applies it again."""
    if not cfg.log_config:
        return None
    try:
        logconfig.apply(logconfig.read(cfg.log_config))
    except logconfig.LogConfigError as e:
        return str(e)
    return None


def _describe_hook(cfg: config.Config, name: str, spec: str) -> str:
    """`when_ready (gunicorn.conf.py)` for a hook the .py config defines, else name=spec."""
    if spec.startswith(gunicorn_conf.MODULE + ":"):
        return f"{name} ({os.path.basename(cfg.config or '')})"
    return f"{name}={spec}"


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Everything main() does, with explicit inputs."""
    if list(argv[:1]) == ["ctl"]:
        from reclusterd import ctl

        return ctl.main(argv[1:], environ)
    if config.version_requested(argv):
        print(config.version_text())
        return 0
    for warning in config.unknown_env(environ):
        _err(warning, "warning")
    try:
        cfg = config.load(argv, environ, warn=lambda m: _err(m, "warning"))
    except config.ConfigError as e:
        _err(str(e))
        return CHECK_FAILED if _check_mode(argv, environ) else USAGE_EXIT
    # The app's environment, before the app is imported (--check-config, --preload) and
    # before workers fork; the arbiter applies it again on HUP.
    appenv.apply(appenv.app_environ(cfg))
    problem = _try_log_config(cfg)
    if problem:
        _err(f"--log-config: {problem}")
        return CHECK_FAILED if cfg.check_config else USAGE_EXIT
    if cfg.check_config:
        return check_config(cfg)
    from reclusterd.arbiter import Arbiter

    return Arbiter(cfg, list(argv), dict(environ)).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point (`reclusterd`, `python -m reclusterd`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(args, os.environ)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout was a pipe closed early (`--check-config | head -1`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except SystemExit as e:  # argparse --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
