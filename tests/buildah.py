"""Build and run the project's Dockerfile with buildah, where no registry can be reached.

buildah runs with `--isolation chroot` and the vfs storage driver (no overlay mounts, no
user namespaces, no network namespace: works as root on a plain VM or CI runner). The base
image is not pulled: it is made once from the host's own Debian packages (debootstrap
minbase + python3 + python3-venv) and kept in the storage under BASE_IMAGE, so later runs
only build.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Persistent between runs (the base image and the layer cache live here); /var/tmp
# survives reboots, unlike /tmp.
STORE = Path(os.environ.get("BUILDAH_TEST_STORE", "/var/tmp/reclusterd-buildah"))
SUITE = "bookworm"                     # Debian 12: python3 is 3.11, as python:3.11-slim
BASE_IMAGE = f"localhost/reclusterd-base:{SUITE}"
MIRROR = os.environ.get("BUILDAH_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's pip trusts (PIP_CERT, else OpenSSL's default file).

    The base image is the host's Debian, so it carries the host's trust too: where egress
    goes through a TLS-intercepting proxy, pip in the build needs that proxy's CA.
    """
    for name in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                 ssl.get_default_verify_paths().cafile):
        if name and Path(name).is_file():
            return Path(name)
    return None


def unavailable() -> str | None:
    """Why the real build cannot run here (a skip reason), or None."""
    if not shutil.which("buildah"):
        return "buildah is not installed (apt-get install buildah debootstrap)"
    if os.geteuid() != 0:
        return "buildah with chroot isolation and vfs storage needs root here"
    if not shutil.which("debootstrap") and not Buildah().image_exists(BASE_IMAGE):
        return f"debootstrap is not installed and {BASE_IMAGE} is not cached"
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: concurrent test runs share the store but make the base once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


class Buildah:
    """The buildah CLI on a private store (so it never meets another storage driver)."""

    def __init__(self, store: Path = STORE) -> None:
        self.store = store
        self.prefix = ["buildah", "--root", str(store / "storage"),
                       "--runroot", str(store / "run"), "--storage-driver", "vfs"]

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def __call__(self, *args: str, timeout: float = 120,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*args), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} -> {r.returncode}:\n{r.stderr}")
        return r

    def image_exists(self, name: str) -> bool:
        return self("inspect", "--type", "image", name, check=False).returncode == 0

    def image_config(self, name: str) -> dict[str, Any]:
        """The image's Docker-format config (Cmd, User, Healthcheck, ...)."""
        out = json.loads(self("inspect", "--type", "image", name).stdout)
        config: dict[str, Any] = out["Docker"]["config"]
        return config

    def ensure_base(self) -> str:
        """BASE_IMAGE, made from Debian packages unless the store has it already."""
        with _locked(self.store / "base.lock"):
            if not self.image_exists(BASE_IMAGE):
                self._make_base()
        return BASE_IMAGE

    def _make_base(self) -> None:
        with tempfile.TemporaryDirectory(dir=self.store, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                 SUITE, str(rootfs), MIRROR],
                check=True, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
            ca = host_ca_bundle()
            env: list[str] = []
            if ca is not None:
                dest = rootfs / CA_IN_IMAGE.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ca, dest)
                env = ["--env", f"PIP_CERT={CA_IN_IMAGE}", "--env", f"SSL_CERT_FILE={CA_IN_IMAGE}"]
            ctr = self("from", "scratch").stdout.strip()
            try:
                mnt = self("mount", ctr).stdout.strip()
                # cp -a keeps owners, modes, links and device nodes as debootstrap made them
                subprocess.run(["cp", "-a", f"{rootfs}/.", mnt], check=True, timeout=300)
                self("umount", ctr)
                self("config", "--cmd", '["python3"]', *env, ctr)
                self("commit", "--quiet", ctr, BASE_IMAGE, timeout=300)
            finally:
                self("rm", ctr, check=False)

    def build(self, context: Path, tag: str, base: str, target: str | None = None) -> str:
        """`buildah bud` with layer caching; returns the build log (stdout + stderr).

        `--format docker` keeps the HEALTHCHECK (the OCI format has none). `target` stops
        at that stage (vfs copies the whole tree for every layer: skipping is faster).
        """
        stage = ["--target", target] if target else []
        r = subprocess.run(
            self.argv("bud", "--isolation", "chroot", "--format", "docker", "--layers",
                      *stage, "--build-arg", f"BASE={base}", "-t", tag, str(context)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
            stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"buildah bud -> {r.returncode}:\n{r.stdout[-6000:]}")
        return r.stdout

    def run_argv(self, container: str, command: Sequence[str]) -> list[str]:
        """argv running `command` in a working container, on the host's network."""
        return self.argv("run", "--isolation", "chroot", container, "--", *command)


@dataclass(frozen=True)
class Step:
    """One build step as the log reports it."""

    stage: int          # 1-based, in Dockerfile order
    instruction: str    # as buildah echoes it (continuations joined)
    image: str          # the step's resulting image id (short form)
    cached: bool        # reused from the layer cache


def build_steps(log: str) -> list[Step]:
    """The steps of a `buildah bud` log, in order (FROM steps have no result: left out).

    buildah prints `[s/S] STEP i/n: INSTRUCTION` (no `[s/S]` for one stage), then
    `--> Using cache <full id>` when the layer is reused, and `--> <short id>` for the
    step's result either way.
    """
    out: list[Step] = []
    stage, step, cached = 0, "", False
    for line in log.splitlines():
        if m := re.match(r"(?:\[(\d+)/\d+\] )?STEP \d+/\d+: (.*)", line):
            stage, step, cached = int(m.group(1) or 1), m.group(2), False
        elif line.startswith("--> Using cache "):
            cached = True
        elif (m := re.fullmatch(r"--> ([0-9a-f]{6,})", line.strip())) and step:
            out.append(Step(stage, step, m.group(1), cached))
            step = ""
    return out


def context_files(dockerfile: Path) -> list[str]:
    """What the Dockerfile COPYs from the build context, plus itself and .dockerignore."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    names = ["Dockerfile", ".dockerignore"]
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            names += [w for w in words[1:-1] if not w.startswith("--")]
    return names


def store_lock(b: Buildah) -> contextlib.AbstractContextManager[None]:
    """Exclusive use of the store (build, run, clean-up) across concurrent test runs."""
    return _locked(b.store / "use.lock")
