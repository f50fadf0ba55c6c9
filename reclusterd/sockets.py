"""Listening sockets: bind, inherit (USR2 re-exec, systemd, fd://), TLS context, privileges.

The arbiter binds every listener before forking so workers share them; nothing
here accepts connections. Errors are `BindError` with one line naming the address,
so the CLI can print it and exit non-zero.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import ssl
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reclusterd import systemd

if TYPE_CHECKING:
    from reclusterd.config import Config

FDS_ENV = "RECLUSTERD_FDS"
DEFAULT_PORT = 8000


class BindError(Exception):
    """A listener could not be set up; str() is one line naming the address."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TLSError(BindError):
    """The TLS context could not be built (bad cert/key path, bad ciphers)."""


class PrivilegeError(BindError):
    """--user/--group could not be applied."""


@dataclass
class Listener:
    """One listening socket and the address as the user wrote it."""

    sock: socket.socket
    address: str
    unix_path: str | None = None   # set for unix sockets we created (removed on close)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def is_unix(self) -> bool:
        return self.sock.family == socket.AF_UNIX

    def __str__(self) -> str:
        return self.address


# ---------------------------------------------------------------- parsing


def parse_address(address: str) -> tuple[str, object]:
    """Split a bind string into (kind, target): ("unix", path), ("fd", n), ("tcp", (host, port))."""
    if address.startswith("unix:"):
        path = address[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise BindError(f"empty unix socket path: {address}")
        return "unix", path
    if address.startswith("fd://"):
        try:
            return "fd", int(address[5:])
        except ValueError:
            raise BindError(f"bad file descriptor in bind address: {address}") from None
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BindError(f"bad IPv6 bind address (use [::1]:PORT): {address}")
        port_s = rest[1:] if rest else str(DEFAULT_PORT)
    elif address.count(":") > 1:
        raise BindError(f"IPv6 bind addresses need brackets ([::1]:PORT): {address}")
    else:
        host, _, port_s = address.rpartition(":") if ":" in address else (address, "", "")
        if not port_s:
            port_s = str(DEFAULT_PORT)
        if not host:
            host = "0.0.0.0"
    try:
        port = int(port_s)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise BindError(f"bad port in bind address: {address}") from None
    return "tcp", (host, port)


def _os_error(address: str, err: OSError) -> BindError:
    if err.errno == errno.EADDRINUSE:
        return BindError(f"address already in use: {address}")
    if err.errno in (errno.EACCES, errno.EPERM):
        return BindError(f"permission denied binding {address}")
    if err.errno == errno.EADDRNOTAVAIL:
        return BindError(f"cannot assign requested address: {address}")
    return BindError(f"cannot bind {address}: {err.strerror or err}")


# ---------------------------------------------------------------- binding


def _bind_tcp(address: str, host: str, port: int, cfg: Config) -> Listener:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise BindError(f"cannot resolve host {host!r} in bind address {address}: {e}") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if getattr(cfg, "reuse_port", False) and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(int(getattr(cfg, "backlog", 2048)))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise _os_error(address, e) from None
    return Listener(sock, address)


def _remove_stale_unix(address: str, path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _os_error(address, e) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"cannot bind {address}: path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)          # nobody listening: a stale file from a dead server
        return
    finally:
        probe.close()
    raise BindError(f"address already in use: {address}")


def _bind_unix(address: str, path: str, cfg: Config) -> Listener:
    _remove_stale_unix(address, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = getattr(cfg, "umask", None)
    mode = 0o660 & ~(umask or 0)
    old = os.umask(0o777 & ~mode)   # no window where the file is wider than `mode`
    try:
        sock.bind(path)
        sock.listen(int(getattr(cfg, "backlog", 2048)))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise _os_error(address, e) from None
    finally:
        os.umask(old)
    uid, gid = _target_ids(cfg)
    if os.geteuid() == 0 and (uid is not None or gid is not None):
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    return Listener(sock, address, unix_path=os.path.abspath(path))


def _from_fd(address: str, fd: int) -> Listener:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise BindError(f"cannot use {address}: {e.strerror or e}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise BindError(f"cannot use {address}: not a stream socket")
    sock.setblocking(False)
    sock.set_inheritable(False)
    return Listener(sock, address)


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


def _inherited(environ: Mapping[str, str]) -> list[Listener] | None:
    """Listeners passed by a previous arbiter (USR2) or by systemd; None when neither."""
    raw = environ.get(FDS_ENV)
    if raw:
        try:
            pairs = json.loads(raw)
            out = []
            for fd, address in pairs:
                lis = _from_fd(str(address), int(fd))
                kind, target = parse_address(str(address))
                if kind == "unix":
                    lis.unix_path = os.path.abspath(str(target))
                out.append(lis)
            return out
        except (ValueError, TypeError):
            raise BindError(f"bad {FDS_ENV} value: {raw!r}") from None
    fds = systemd.listen_fds(environ)
    if fds:
        out = []
        for fd in fds:
            lis = _from_fd(f"fd://{fd}", fd)
            lis.address = _describe(lis.sock)   # systemd owns the file: never unlinked
            out.append(lis)
        return out
    return None


def bind_listeners(cfg: Config, environ: Mapping[str, str]) -> list[Listener]:
    """Bind every cfg.bind, or inherit RECLUSTERD_FDS (USR2) / LISTEN_FDS (systemd) instead."""
    inherited = _inherited(environ)
    if inherited is not None:
        return inherited
    out: list[Listener] = []
    try:
        for address in cfg.bind:
            kind, target = parse_address(address)
            if kind == "unix":
                out.append(_bind_unix(address, str(target), cfg))
            elif kind == "fd":
                assert isinstance(target, int)
                out.append(_from_fd(address, target))
            else:
                assert isinstance(target, tuple)
                out.append(_bind_tcp(address, target[0], target[1], cfg))
    except BaseException:
        close_listeners(out)
        raise
    return out


def inherit_environ(listeners: Iterable[Listener]) -> dict[str, str]:
    """Env vars that hand these listeners to a re-exec'd arbiter (fds made inheritable)."""
    pairs = []
    for lis in listeners:
        lis.sock.set_inheritable(True)
        pairs.append([lis.fileno(), lis.address])
    return {FDS_ENV: json.dumps(pairs)}


def close_listeners(listeners: Iterable[Listener], unlink: bool = True) -> None:
    """Close the sockets; with unlink, remove the unix socket files we created.

    Pass unlink=False while a USR2 child arbiter still serves on the same files.
    """
    for lis in listeners:
        try:
            lis.sock.close()
        except OSError:
            pass
        if unlink and lis.unix_path:
            try:
                if stat.S_ISSOCK(os.lstat(lis.unix_path).st_mode):
                    os.unlink(lis.unix_path)
            except OSError:
                pass


# ---------------------------------------------------------------- TLS


_ssl_cache: dict[tuple[object, ...], ssl.SSLContext] = {}


def _mtime(path: str | None) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return -1.0


def ssl_context(cfg: Config) -> ssl.SSLContext | None:
    """Server TLS context from certfile/keyfile/ca_certs/ciphers; None without a certfile.

    Cached by settings and file mtimes: the arbiter builds it once before forking and
    workers calling ssl_context(cfg) get the inherited object; a HUP with renewed
    certificate files builds a fresh one.
    """
    names = ("certfile", "keyfile", "ca_certs", "ciphers")
    vals = [getattr(cfg, n, None) for n in names]
    key = (*vals, *(_mtime(v) for v in vals[:3]))
    if key in _ssl_cache:
        return _ssl_cache[key]
    ctx = _build_ssl_context(cfg)
    if ctx is not None:
        _ssl_cache.clear()
        _ssl_cache[key] = ctx
    return ctx


def _build_ssl_context(cfg: Config) -> ssl.SSLContext | None:
    certfile = getattr(cfg, "certfile", None)
    keyfile = getattr(cfg, "keyfile", None)
    if not certfile:
        if keyfile:
            raise TLSError("--keyfile given without --certfile")
        return None
    for name, path in (("certfile", certfile), ("keyfile", keyfile),
                       ("ca_certs", getattr(cfg, "ca_certs", None))):
        if path and not os.path.isfile(path):
            raise TLSError(f"{name}: no such file: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile or None)
    except (ssl.SSLError, OSError) as e:
        raise TLSError(f"certfile/keyfile: cannot load {certfile}: {_ssl_reason(e)}") from None
    ca_certs = getattr(cfg, "ca_certs", None)
    if ca_certs:
        try:
            ctx.load_verify_locations(cafile=ca_certs)
        except (ssl.SSLError, OSError) as e:
            raise TLSError(f"ca_certs: cannot load {ca_certs}: {_ssl_reason(e)}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ciphers = getattr(cfg, "ciphers", None)
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as e:
            raise TLSError(f"ciphers: {_ssl_reason(e)}: {ciphers}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _ssl_reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or getattr(e, "strerror", None)
    return str(reason or e).splitlines()[0]


# ---------------------------------------------------------------- privileges


def _target_ids(cfg: Config) -> tuple[int | None, int | None]:
    import grp
    import pwd

    user = getattr(cfg, "user", None)
    group = getattr(cfg, "group", None)
    uid = gid = None
    if user:
        try:
            pw = pwd.getpwuid(int(user)) if str(user).isdigit() else pwd.getpwnam(str(user))
        except KeyError:
            raise PrivilegeError(f"user: no such user: {user}") from None
        uid, gid = pw.pw_uid, pw.pw_gid
    if group:
        try:
            gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
        except KeyError:
            raise PrivilegeError(f"group: no such group: {group}") from None
    return uid, gid


def drop_privileges(cfg: Config) -> None:
    """After binding: apply --umask, then switch to --group/--user (group first)."""
    umask = getattr(cfg, "umask", None)
    if umask is not None:
        os.umask(int(umask))
    uid, gid = _target_ids(cfg)
    if uid is None and gid is None:
        return
    try:
        if uid is not None and uid != os.geteuid():
            import pwd
            os.initgroups(pwd.getpwuid(uid).pw_name, gid if gid is not None else os.getegid())
        elif gid is not None and gid != os.getegid():
            os.setgroups([gid])
        if gid is not None and gid != os.getegid():
            os.setgid(gid)
        if uid is not None and uid != os.geteuid():
            os.setuid(uid)
    except OSError as e:
        raise PrivilegeError(
            f"cannot switch to user={cfg.user} group={cfg.group}: {e.strerror or e}") from None
