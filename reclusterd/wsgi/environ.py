"""The PEP 3333 environ of a request: per-listener constants plus the request's own keys.

Header names and whole header lines repeat on every request (Host, User-Agent,
Accept...), so their environ form is cached in small bounded dicts: one dict hit
instead of decode+upper+replace, and hostile clients cannot grow them.
"""

from __future__ import annotations

import socket

from reclusterd import __version__
from reclusterd.http import Request, decode_path
from reclusterd.http.forwarded import ProxyResolver
from reclusterd.http.rootpath import under_root
from reclusterd.wsgi.conn import Environ
from reclusterd.wsgi.response import ErrorStream, FileWrapper

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


class EnvironBuilder:
    """Builds environs for one worker; shared by its threads (the caches are GIL-safe)."""

    def __init__(self, multithread: bool, multiprocess: bool,
                 proxy: ProxyResolver | None, root_path: str = "") -> None:
        self.multithread = multithread
        self.root = root_path       # --root-path: SCRIPT_NAME (http.rootpath)
        self.multiprocess = multiprocess
        self.proxy = proxy
        self.keys: dict[bytes, str] = {b"content-type": "CONTENT_TYPE", b"content-length": ""}
        self.lines: dict[tuple[bytes, bytes], tuple[str, str]] = {}
        self.hosts: dict[tuple[str, str], tuple[str, str]] = {}
        self._listener_env: dict[int, Environ] = {}

    def listener_environ(self, lsock: socket.socket, secure: bool) -> Environ:
        """The environ keys fixed for every request on one listener."""
        env = self._listener_env.get(lsock.fileno())
        if env is not None:
            return env
        # PEP 3333: SERVER_NAME and SERVER_PORT are never empty; a unix-socket listener
        # has no port, so the scheme's default stands in (what a request without Host
        # reached through a proxy on 80/443 means). RFC 3875 §4.1.14: an IPv6
        # SERVER_NAME is bracketed, so NAME:PORT (wsgiref.util.request_uri) stays a URL.
        name, port = "localhost", "443" if secure else "80"
        addr = lsock.getsockname()
        if isinstance(addr, tuple):
            host = str(addr[0])
            name, port = f"[{host}]" if ":" in host else host, str(addr[1])
        env = {
            "SERVER_NAME": name, "SERVER_PORT": port, "SCRIPT_NAME": self.root,
            "SERVER_SOFTWARE": f"reclusterd/{__version__}",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "https" if secure else "http",
            "wsgi.errors": ErrorStream(), "wsgi.multithread": self.multithread,
            "wsgi.multiprocess": self.multiprocess, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
        }
        self._listener_env[lsock.fileno()] = env
        return env

    def _key(self, name: bytes) -> str:
        key = "" if b"_" in name else "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(self.keys) < 1024:
            self.keys[name] = key
        return key

    def _line(self, name: bytes, value: bytes) -> tuple[str, str]:
        key = self.keys.get(name)
        if key is None:
            key = self._key(name)
        line = (key, value.decode("latin-1") if key else "")
        if len(self.lines) < 512:
            self.lines[(name, value)] = line
        return line

    def _host(self, host: str, scheme: str) -> tuple[str, str]:
        """Host (or an absolute target's authority) -> (SERVER_NAME, SERVER_PORT); an
        empty or non-numeric port (`a:`, RFC 3986 §3.2.3 allows it) is the default one."""
        i = host.rfind(":")
        name, port = (host[:i], host[i + 1:]) if i > host.rfind("]") else (host, "")
        if not (port.isascii() and port.isdigit()):
            port = "443" if scheme == "https" else "80"
        got = (name, port)
        if len(self.hosts) < 256:
            self.hosts[(host, scheme)] = got
        return got

    def _absolute_authority(self, env: Environ, target: bytes) -> None:
        """RFC 9112 §3.2.2: with an absolute-form target the server ignores Host and uses
        the target's authority (the parser has already checked the target's syntax)."""
        scheme, _, rest = target.partition(b"://")
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].rpartition(b"@")[2]
        if authority:
            host = authority.decode("latin-1")
            env["HTTP_HOST"] = host
            env["SERVER_NAME"], env["SERVER_PORT"] = self._host(
                host, "https" if scheme.lower() == b"https" else "http")

    def environ(self, base: Environ, remote_addr: str, req: Request) -> Environ:
        """PEP 3333 environ for one request on a connection whose fixed keys are `base`."""
        env = base.copy()
        path = req.path
        path_info = (decode_path(path) if b"%" in path else path).decode("latin-1")
        root = self.root
        if root and under_root(path_info, root):
            path_info = path_info[len(root):]
        env["PATH_INFO"] = path_info
        env["QUERY_STRING"] = req.query.decode("latin-1")
        method = _METHODS.get(req.method)
        env["REQUEST_METHOD"] = req.method.decode("latin-1") if method is None else method
        version = req.http_version
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
        env["RAW_URI"] = req.target.decode("latin-1")
        if req.content_length is not None:
            env["CONTENT_LENGTH"] = str(req.content_length)
        lines = self.lines
        for hdr in req.headers:
            line = lines.get(hdr)
            if line is None:
                line = self._line(*hdr)
            key = line[0]
            if key:
                old = env.get(key)
                env[key] = line[1] if old is None else old + "," + line[1]
        host = env.get("HTTP_HOST")
        if host:
            scheme = env["wsgi.url_scheme"]
            got = self.hosts.get((host, scheme))
            env["SERVER_NAME"], env["SERVER_PORT"] = got or self._host(host, scheme)
        if req.target[:1] != b"/" and b"://" in req.target:
            self._absolute_authority(env, req.target)
        if self.proxy is not None and ("HTTP_X_FORWARDED_FOR" in env or "HTTP_FORWARDED" in env
                                       or "HTTP_X_FORWARDED_PROTO" in env):
            peer_port = env.get("REMOTE_PORT")
            client = self.proxy.resolve(remote_addr or None, req.headers,
                                        int(peer_port) if peer_port else 0)
            env["REMOTE_ADDR"] = client.host
            env["wsgi.url_scheme"] = client.scheme
            if client.host:
                env["REMOTE_PORT"] = str(client.port)
        return env
