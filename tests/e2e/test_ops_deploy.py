"""OPS e2e: the Dockerfile reads right and its CMD/HEALTHCHECK work outside Docker;
conf/ files pass --check-config; the arbiter as PID 1 of a PID namespace exits 0 on TERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_client import http_get
from tests.support.process import ROOT, Server, free_port, wait_for

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs with line continuations joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_reads_right() -> None:
    ins = instructions()
    froms = [a for k, a in ins if k == "FROM"]
    # one overridable base for both stages (the buildah test builds on a Debian one)
    assert ins[0] == ("ARG", "BASE=python:3.11-slim")
    assert len(froms) >= 2 and all(f.split()[0] == "${BASE}" for f in froms)
    # the final stage (after the last FROM) runs as a non-root user
    final = ins[max(i for i, (k, _) in enumerate(ins) if k == "FROM"):]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "8000 9000") in final or any(
        k == "EXPOSE" and "8000" in a.split() for k, a in final)
    assert ("STOPSIGNAL", "SIGTERM") in final
    health = [a for k, a in final if k == "HEALTHCHECK"]
    assert health and "/livez" in health[0] and "curl" not in health[0]
    cmd = json.loads([a for k, a in final if k == "CMD"][-1])
    assert cmd[0] == "reclusterd" and "--bind" in cmd and "--status-bind" in cmd
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignore and ".venv" in ignore


def test_dockerfile_layers() -> None:
    """Issue 11 item 12: a dependency-only layer, no /wheels left behind, a quiet useradd."""
    ins = instructions()
    copies = [(i, a) for i, (k, a) in enumerate(ins) if k == "COPY"]
    first_pyproject = min(i for i, a in copies if a.split()[0] == "pyproject.toml")
    source = min(i for i, a in copies if a.split()[0] == "reclusterd")
    installs = [i for i, (k, a) in enumerate(ins) if k == "RUN" and "pip install" in a]
    assert any(first_pyproject < i < source for i in installs), "deps installed before source"
    assert all("type=cache" in ins[i][1] for i in installs)
    assert "/wheels" not in DOCKERFILE.read_text()
    user = next(a for k, a in ins if k == "RUN" and "useradd" in a)
    uid = int(re.search(r"--uid (\d+)", user).group(1))  # type: ignore[union-attr]
    assert "--system" not in user and 1000 <= uid <= 60000
    assert "--format docker" in DOCKERFILE.read_text()   # OCI drops HEALTHCHECK: say so


def _cmd_and_health() -> tuple[list[str], list[str]]:
    final = instructions()
    cmd = json.loads([a for k, a in final if k == "CMD"][-1])
    health = [a for k, a in final if k == "HEALTHCHECK"][-1]
    hc = json.loads(health[health.index("CMD") + 3:].strip())
    return cmd, hc


def test_docker_cmd_and_healthcheck_work_outside_docker(tmp_path: Path) -> None:
    cmd, hc = _cmd_and_health()
    port, sport = free_port(), free_port()
    status_addr = cmd[cmd.index("--status-bind") + 1]
    sport_in_image = status_addr.rsplit(":", 1)[1]
    args = list(cmd)
    args[args.index("--bind") + 1] = f"127.0.0.1:{port}"
    args[args.index("--status-bind") + 1] = f"127.0.0.1:{sport}"
    exe = shutil.which("reclusterd")
    args = ([exe] if exe else [sys.executable, "-m", "reclusterd"]) + args[1:]
    with Server(args, cwd=ROOT, port=port, env={"WEB_CONCURRENCY": "2"}) as srv:
        srv.wait_ready()
        status, _, body = http_get(port)
        assert status == 200 and body.startswith(b"Hello")
        hc_args = [sys.executable if a == "python" else a.replace(
            f":{sport_in_image}/", f":{sport}/") for a in hc]

        def healthy() -> bool:
            return subprocess.run(hc_args, capture_output=True, timeout=10).returncode == 0
        wait_for(healthy, 15, interval=0.2, what="HEALTHCHECK command to pass")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
    # and it fails when nothing answers
    assert subprocess.run(hc_args, capture_output=True, timeout=10).returncode != 0


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "conf").glob("*.toml")))
def test_conf_toml_passes_check_config(name: str) -> None:
    args = [sys.executable, "-m", "reclusterd", "-c", f"conf/{name}", "--check-config"]
    text = (ROOT / "conf" / name).read_text()
    if not re.search(r"^app\s*=", text, re.M):
        args.insert(3, "examples.hello:app")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("WEB_CONCURRENCY", None)
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout


def _k8s() -> dict[str, dict[str, Any]]:
    import yaml

    docs = yaml.safe_load_all((ROOT / "conf" / "k8s-deployment.yaml").read_text())
    return {d["kind"]: d for d in docs if d}


def test_k8s_manifests_validate() -> None:
    import kubernetes_validate

    for doc in _k8s().values():
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_k8s_config_has_one_source() -> None:
    """The Deployment runs `-c` on the ConfigMap, which is conf/kubernetes.toml verbatim."""
    kinds = _k8s()
    cm, dep = kinds["ConfigMap"], kinds["Deployment"]
    assert cm["data"]["reclusterd.toml"] == (ROOT / "conf" / "kubernetes.toml").read_text()
    pod = dep["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["reclusterd", "-c", "/etc/reclusterd/reclusterd.toml"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "config"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert (mount["mountPath"], volume["configMap"]["name"]) == (
        "/etc/reclusterd", cm["metadata"]["name"])
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert not container["image"].endswith(":latest") and ":" in container["image"]


def test_k8s_grace_period_covers_shutdown() -> None:
    settings = tomllib.loads((ROOT / "conf" / "kubernetes.toml").read_text())
    pod = _k8s()["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > (
        settings["shutdown_delay"] + settings["graceful_timeout"])
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert settings["status_bind"].endswith(":9000")
    unit = (ROOT / "conf" / "reclusterd.service").read_text()
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "KillSignal=SIGTERM" in unit


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "true"],
                          capture_output=True, timeout=10).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare --pid")
def test_pid1_in_pid_namespace_term_exits_0(tmp_path: Path) -> None:
    import psutil

    port = free_port()
    args = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
            sys.executable, "-m", "reclusterd", "examples.hello:app", "--workers", "2",
            "--bind", f"127.0.0.1:{port}"]
    with Server(args, cwd=ROOT, port=port) as srv:
        srv.wait_ready()

        def arbiter() -> psutil.Process | None:
            kids = psutil.Process(srv.pid).children()
            return kids[0] if kids else None
        arb = wait_for(arbiter, 10, what="arbiter under unshare")
        nspid = [ln for ln in Path(f"/proc/{arb.pid}/status").read_text().splitlines()
                 if ln.startswith("NSpid:")]
        assert nspid and nspid[0].split()[-1] == "1", nspid
        workers = wait_for(lambda: len(arb.children()) == 2 and arb.children(), 15,
                           what="2 workers")
        assert http_get(port)[0] == 200
        os.kill(arb.pid, signal.SIGTERM)
        assert srv.wait_exit(30) == 0          # unshare returns PID 1's exit status
        for w in workers:
            assert not psutil.pid_exists(w.pid) or w.status() == psutil.STATUS_ZOMBIE
