"""Listening sockets: the bind-address grammar, bind, inherit (USR2, systemd, fd://), privileges.

The arbiter binds every listener before forking so workers share them; nothing
here accepts connections. Errors are `BindError` with one line naming the address,
so the CLI can print it and exit non-zero. TLS lives in `reclusterd.tls`.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import socket
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reclusterd import systemd

FDS_ENV = "RECLUSTERD_FDS"
DEFAULT_PORT = 8000


class BindError(Exception):
    """A listener could not be set up; str() is one line naming the address."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    def __str__(self) -> str:
        return self.address


# ---------------------------------------------------------------- the address grammar


@dataclass(frozen=True)
class TCPAddress:
    """A host name, IPv4 or IPv6 literal (without brackets) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class UnixAddress:
    """A unix socket path (created by bind, removed on close)."""

    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class FDAddress:
    """An already-listening socket inherited on this file descriptor."""

    fd: int

    def __str__(self) -> str:
        return f"fd://{self.fd}"


Address = TCPAddress | UnixAddress | FDAddress


class AddressError(BindError, ValueError):
    """A bind string that is none of the accepted forms (a ValueError for validators)."""


_FORMS = "expected HOST, HOST:PORT, :PORT, [IPV6]:PORT, unix:PATH or fd://N"
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def parse_address(text: str) -> Address:
    """Parse a --bind/--status-bind string; the one grammar validation and binding share.

    Forms, as in Gunicorn: `HOST` alone (port 8000), `HOST:PORT`, `:PORT` (0.0.0.0),
    `[IPV6]` or `[IPV6]:PORT`, `unix:PATH` (also `unix://PATH`), `fd://N`; the TCP forms
    may carry Gunicorn's `tcp://` prefix.
    Raises AddressError with a one-line message that reads after "--bind: ".
    """
    if text.startswith("tcp://"):
        inner = text[6:]
        if not inner or inner.startswith(("unix:", "fd://", "tcp://")):
            raise AddressError(f"{_FORMS}, got {text!r}")
        return parse_address(inner)
    if text.startswith("unix:"):
        path = text[7:] if text.startswith("unix://") else text[5:]
        if not path:
            raise AddressError(f"empty unix socket path in {text!r}")
        return UnixAddress(path)
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise AddressError(f"fd://N needs a file descriptor number, got {text!r}")
        return FDAddress(int(text[5:]))
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise AddressError(f"{_FORMS}, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"bad IPv6 address in {text!r}") from None
        return TCPAddress(host, _port(rest[1:] if rest else str(DEFAULT_PORT), text))
    if text.count(":") > 1:
        raise AddressError(f"IPv6 addresses need brackets ([::1]:8000), got {text!r}")
    host, sep, port = text.partition(":")
    if sep and not host:
        return TCPAddress("0.0.0.0", _port(port, text))     # Gunicorn's ":PORT"
    if not _HOST_RE.match(host):
        raise AddressError(f"{_FORMS}, got {text!r}" if not host else f"bad host in {text!r}")
    return TCPAddress(host, _port(port if sep else str(DEFAULT_PORT), text))


def _port(digits: str, text: str) -> int:
    if not digits.isdigit() or int(digits) > 65535:
        raise AddressError(f"port must be 0..65535, got {text!r}")
    return int(digits)


# ---------------------------------------------------------------- binding


# A unix socket file's mode is 0o777 & ~umask, as in Gunicorn, whose --umask defaults
# to 0: without --umask the file is srwxrwxrwx and its directory decides who connects.
DEFAULT_SOCKET_UMASK = 0


@dataclass(frozen=True)
class BindOptions:
    """What binding needs besides the addresses (--backlog, --reuse-port, --umask, owner)."""

    backlog: int
    reuse_port: bool
    umask: int | None           # for unix socket files; None = DEFAULT_SOCKET_UMASK
    uid: int | None = None      # owner of unix socket files (applied when running as root)
    gid: int | None = None


def _os_error(address: str, err: OSError) -> BindError:
    if err.errno == errno.EADDRINUSE:
        return BindError(f"address already in use: {address}")
    if err.errno in (errno.EACCES, errno.EPERM):
        return BindError(f"permission denied binding {address}")
    if err.errno == errno.EADDRNOTAVAIL:
        return BindError(f"cannot assign requested address: {address}")
    return BindError(f"cannot bind {address}: {err.strerror or err}")


def _bind_tcp(addr: TCPAddress, options: BindOptions) -> Listener:
    address = str(addr)
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise BindError(f"cannot resolve host {addr.host!r} in bind address {address}: {e}"
                        ) from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if options.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(options.backlog)
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


def _bind_unix(addr: UnixAddress, options: BindOptions) -> Listener:
    """bind(2) creates the file with mode 0o777 & ~umask (unix(7)); connecting needs write."""
    address, path = str(addr), addr.path
    _remove_stale_unix(address, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = DEFAULT_SOCKET_UMASK if options.umask is None else options.umask
    old = os.umask(umask)   # set around bind: no window where the file is wider
    try:
        sock.bind(path)
        sock.listen(options.backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise _os_error(address, e) from None
    finally:
        os.umask(old)
    if os.geteuid() == 0 and (options.uid is not None or options.gid is not None):
        # --user/--group own the file, so a dropped-privilege re-exec can still unlink it.
        os.chown(path, -1 if options.uid is None else options.uid,
                 -1 if options.gid is None else options.gid)
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
            out = []
            for fd, address in json.loads(raw):
                lis = _from_fd(str(address), int(fd))
                addr = parse_address(str(address))
                if isinstance(addr, UnixAddress):
                    lis.unix_path = os.path.abspath(addr.path)
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


def _bind_one(addr: Address, options: BindOptions) -> Listener:
    if isinstance(addr, UnixAddress):
        return _bind_unix(addr, options)
    if isinstance(addr, FDAddress):
        return _from_fd(str(addr), addr.fd)
    return _bind_tcp(addr, options)


def bind_listeners(addresses: Iterable[str | Address], environ: Mapping[str, str],
                   options: BindOptions) -> list[Listener]:
    """Bind every address, or inherit RECLUSTERD_FDS (USR2) / LISTEN_FDS (systemd) instead.

    On any failure the listeners already bound are closed (and their files removed).
    """
    inherited = _inherited(environ)
    if inherited is not None:
        return inherited
    out: list[Listener] = []
    try:
        for item in addresses:
            addr = parse_address(item) if isinstance(item, str) else item
            lis = _bind_one(addr, options)
            if isinstance(item, str):
                lis.address = item          # as the user wrote it (log lines, USR2 hand-over)
            out.append(lis)
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


# ---------------------------------------------------------------- privileges


def owner_ids(user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """--user/--group (names or numbers) as (uid, gid); a user brings its primary group."""
    import grp
    import pwd

    uid = gid = None
    if user:
        try:
            pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise PrivilegeError(f"user: no such user: {user}") from None
        uid, gid = pw.pw_uid, pw.pw_gid
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"group: no such group: {group}") from None
    return uid, gid


def drop_privileges(uid: int | None, gid: int | None, umask: int | None) -> None:
    """After binding: apply umask (None: keep the inherited one), then gid, then uid."""
    if umask is not None:
        os.umask(umask)
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
        raise PrivilegeError(f"cannot switch to uid={uid} gid={gid}: {e.strerror or e}") from None

