"""Run the shell commands of README.md and of loadtests/ docstrings, or their dry form.

Each block is split into commands; each command goes to a rule for its program:
cheap ones run for real (a server on the bundled apps starts on a loopback ephemeral port,
answers GET /, and stops on TERM), costly ones run as `--help`/`--dry-run` after the
files they name are checked, and ones that need root, Docker or the network are checked
for the files they name only. A program with no rule fails the test: teach this module,
or mark the block `<!-- not-run: why -->` on the line before its fence.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import h11

from reclusterd import config
from tests.support.http_client import http_get
from tests.support.process import ROOT, Server, free_port, wait_for

NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->")
# host:port spellings a block may use; all become 127.0.0.1 on an ephemeral port
HOSTPORT = re.compile(r"\b(?:localhost|127\.0\.0\.1|0\.0\.0\.0):(\d{2,5})\b")
DEFAULT_PORT = "8000"
# how a docstring's indented paragraph starts when it is a command, not a table or code
COMMAND = re.compile(r"(\.venv/bin/|python3? |locust |reclusterd |[A-Z_]+=)")


@dataclass
class Block:
    """A shell snippet and where it came from (`file:line`, for test ids and messages)."""

    where: str
    text: str
    not_run: str | None = None


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    background: bool = False


def markdown_blocks(path: Path) -> list[Block]:
    """The ```sh / ```bash fenced blocks of a Markdown file, with their not-run marker."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```sh", "```bash", "```shell"):
            start = i
            prev = next((x for x in reversed(lines[:i]) if x.strip()), "")
            marker = NOT_RUN.search(prev)
            indent = len(lines[i]) - len(lines[i].lstrip())  # fences nest in list items
            i += 1
            while not lines[i].strip().startswith("```"):
                i += 1
            body = "\n".join(x[indent:] for x in lines[start + 1:i])
            blocks.append(Block(f"{path.name}:{start + 1}", body,
                                marker.group(1) if marker else None))
        i += 1
    return blocks


def docstring_blocks(path: Path) -> list[Block]:
    """Indented command paragraphs of a module docstring (lines starting with 4 spaces)."""
    text = path.read_text(encoding="utf-8")
    doc = text.split('"""')[1] if text.count('"""') >= 2 else ""
    blocks: list[Block] = []
    chunk: list[str] = []
    first = 0
    for n, line in enumerate(doc.splitlines() + [""]):
        if line.startswith("    ") and line.strip() and (chunk or COMMAND.match(line[4:])):
            first = first if chunk else n
            chunk.append(line[4:])
        elif chunk:
            blocks.append(Block(f"{path.relative_to(ROOT)}:{first + 1}", "\n".join(chunk)))
            chunk = []
    return blocks


def _strip_comment(line: str) -> str:
    """Drop a `# comment` that starts a word outside quotes (shell rules, simplified)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def parse_commands(text: str) -> list[Command]:
    """Commands of a block: `&&`, `;` and newlines separate, `&` backgrounds, `\\` joins
    lines, leading NAME=value words are the environment, `for ...; do X; done` gives X."""
    text = text.replace("\\\n", " ")
    out: list[Command] = []
    for line in text.splitlines():
        lex = shlex.shlex(_strip_comment(line), posix=True, punctuation_chars="&;|")
        lex.whitespace_split = True
        lex.commenters = ""
        words: list[str] = []
        for tok in [*lex, ";"]:
            if tok in ("&&", ";", "&"):
                if words and words[0] == "do":
                    words = words[1:]
                if words and words[0] not in ("for", "done"):
                    out.append(_command(words, tok == "&"))
                words = []
            elif tok in ("|", "||"):
                raise AssertionError(f"pipes are not supported by the README runner: {line}")
            else:
                words.append(tok)
    return out


def _command(words: list[str], background: bool) -> Command:
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return Command(words, env, background)


class BlockRunner:
    """Runs one block's commands in order; `notes` says what was only checked, and why."""

    def __init__(self, block: Block, tmp: Path) -> None:
        self.block = block
        self.tmp = tmp
        self.cwd = ROOT
        self.ports: dict[str, int] = {}
        self.servers: list[Server] = []  # every server started, stopped at the end
        self.jobs: list[Server] = []  # background ones, in order: `kill %N`
        self.running: dict[int, Server] = {}  # port -> background server still up
        self.notes: list[str] = []
        self.skips: list[str] = []

    def port(self, literal: str) -> int:
        return self.ports.setdefault(literal, free_port())

    def localize(self, word: str) -> str:
        """Every host:port becomes 127.0.0.1 on this block's ephemeral port for it."""
        return HOSTPORT.sub(lambda m: f"127.0.0.1:{self.port(m.group(1))}", word)

    def run(self) -> None:
        try:
            for cmd in parse_commands(self.block.text):
                cmd.argv = [self.localize(w) for w in cmd.argv]
                cmd.env = {k: self.localize(v) for k, v in cmd.env.items()}
                self.dispatch(cmd)
        finally:
            for s in self.servers:
                s.stop()

    def dispatch(self, cmd: Command) -> None:
        prog = Path(cmd.argv[0]).name
        rule = RULES.get(prog)
        if prog.startswith("python"):
            rule = BlockRunner.python
        if rule is None:
            raise AssertionError(f"{self.block.where}: no rule for `{shlex.join(cmd.argv)}`: "
                                 "teach tests/readme_shell.py or mark the block "
                                 "<!-- not-run: why -->")
        rule(self, cmd)

    def note(self, cmd: Command, why: str) -> None:
        self.notes.append(f"{shlex.join(cmd.argv)}: {why}")

    def check(self, argv: list[str], cmd: Command) -> None:
        proc = subprocess.run(argv, cwd=self.cwd, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (self.block.where, shlex.join(cmd.argv), argv,
                                      proc.stdout[-2000:], proc.stderr[-2000:])

    # -- rules --------------------------------------------------------------------------

    def python(self, cmd: Command) -> None:
        args = cmd.argv[1:]
        if args[:2] == ["-m", "venv"]:
            self.note(cmd, "not run: the test already runs inside a virtualenv")
        elif args[:2] == ["-m", "pytest"]:
            ci = (ROOT / ".ci" / "run").read_text()
            assert shlex.join(cmd.argv) in ci, f"{self.block.where}: .ci/run does not run it"
            self.note(cmd, "not run: it is this suite; .ci/run runs the same command")
        elif args[:2] == ["-m", "reclusterd"]:
            self.reclusterd(Command(["reclusterd", *args[2:]], cmd.env, cmd.background))
        elif args[:1] == ["-c"]:         # a one-liner (e.g. making a test certificate)
            proc = subprocess.run([sys.executable, *args], cwd=self.tmp, capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, (self.block.where, cmd.argv, proc.stderr[-2000:])
        elif args and args[0].startswith("loadtests/") and args[0].endswith(".py"):
            script = self.cwd / args[0]
            assert script.is_file(), f"{self.block.where}: no such file {args[0]}"
            dry = [*args[1:], "--dry-run"] if script.name == "bench.py" else ["--help"]
            self.check([sys.executable, str(script), *dry], cmd)
        else:
            raise AssertionError(f"{self.block.where}: no rule for `{shlex.join(cmd.argv)}`")

    def pip(self, cmd: Command) -> None:
        assert cmd.argv[1] == "install", cmd.argv
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"]
        for word in cmd.argv[2:]:
            m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", word)
            if m and m.group(1):
                missing = set(m.group(1).split(",")) - set(extras)
                assert not missing, f"{self.block.where}: no extra {missing} in pyproject.toml"
        self.note(cmd, "not run (network); the extras it names exist in pyproject.toml")

    def reclusterd(self, cmd: Command) -> None:
        args = cmd.argv[1:]
        if {"--help", "-h", "--version", "--check-config"} & set(args):
            self.check([sys.executable, "-m", "reclusterd", *args], cmd)
            return
        cfg = config.load(args, {})  # the flags parse (a bad one raises ConfigError)
        base = self.cwd / (cfg.chdir or "")
        module = base / cfg.app.split(":")[0].replace(".", "/")
        if not (module.with_suffix(".py").is_file() or (module / "__init__.py").is_file()):
            self.note(cmd, "flags parse; the app is not in this repository")
            return
        if not any(a in ("-b", "--bind") or a.startswith("--bind=") for a in args):
            args += ["--bind", f"127.0.0.1:{self.port(DEFAULT_PORT)}"]
        port = self._bound_port(args)
        server = Server([sys.executable, "-m", "reclusterd", *args], cwd=self.cwd,
                        env=cmd.env, port=port)
        self.servers.append(server)
        status = wait_for(lambda: self._answer(server), 30, what=f"{self.block.where}: GET /")
        assert status < 500, (self.block.where, status, server.stderr())
        if cmd.background:
            self.jobs.append(server)
            self.running[port] = server
        else:  # in a terminal it would run until Ctrl-C: stop it the graceful way
            server.signal(signal.SIGTERM)
            assert server.wait_exit(30) == 0, (self.block.where, server.stderr())

    @staticmethod
    def _answer(server: Server) -> int | None:
        """The status of GET /, once a worker answers (the port is bound before that)."""
        assert server.proc.poll() is None, f"server exited:\n{server.stderr()}"
        try:
            return http_get(server.port)[0]
        except (OSError, h11.RemoteProtocolError):
            # Connected before any worker booted (the master binds first) and no answer
            # within the probe's timeout: a slow boot on a loaded machine, ask again.
            return None

    @staticmethod
    def _bound_port(args: list[str]) -> int:
        for i, a in enumerate(args):
            if a in ("-b", "--bind"):
                return int(args[i + 1].rpartition(":")[2])
            if a.startswith("--bind="):
                return int(a.rpartition(":")[2])
        raise AssertionError(f"no --bind in {args}")

    def curl(self, cmd: Command) -> None:
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", " ".join(cmd.argv))}
        if not ports or not ports <= set(self.running):
            self.note(cmd, "not run: it talks to a server this block leaves to the reader")
            return
        proc = subprocess.run(cmd.argv, cwd=self.tmp, capture_output=True, timeout=30)
        assert proc.returncode == 0, (self.block.where, cmd.argv, proc.stderr)

    def locust(self, cmd: Command) -> None:
        args = cmd.argv[1:]
        f = args[args.index("-f") + 1]
        assert (self.cwd / f).is_file(), f"{self.block.where}: no such file {f}"
        exe = shutil.which("locust") or str(Path(sys.executable).parent / "locust")
        if not Path(exe).exists():
            self.skips.append(f"{shlex.join(cmd.argv)}: locust not installed (bench extra)")
            return
        self.check([exe, *args, "--help"], cmd)  # loads the locustfile, parses the flags

    def kill(self, cmd: Command) -> None:
        job = cmd.argv[1]
        assert job.startswith("%"), f"{self.block.where}: only `kill %N` is supported"
        server = self.jobs[int(job[1:]) - 1]
        self.running = {p: s for p, s in self.running.items() if s is not server}
        server.signal(signal.SIGTERM)
        assert server.wait_exit(30) == 0, (self.block.where, server.stderr())

    def cd(self, cmd: Command) -> None:
        self.cwd = (self.cwd / cmd.argv[1]).resolve()
        assert self.cwd.is_dir(), f"{self.block.where}: no directory {cmd.argv[1]}"

    def docker(self, cmd: Command) -> None:
        if cmd.argv[1] == "build":
            context = self.cwd / cmd.argv[-1]
            assert (context / "Dockerfile").is_file(), f"{self.block.where}: no Dockerfile"
        self.note(cmd, "not run: needs a container runtime")

    def cp(self, cmd: Command) -> None:
        for src in cmd.argv[1:-1]:
            assert (self.cwd / src).is_file(), f"{self.block.where}: no such file {src}"
        self.note(cmd, "not run: copies outside the repository (needs root)")

    def kubectl(self, cmd: Command) -> None:
        args = cmd.argv
        for i, a in enumerate(args[:-1]):
            if a == "-f":
                path = self.cwd / args[i + 1]
                assert path.is_file(), f"{self.block.where}: no such file {args[i + 1]}"
        self.note(cmd, "not run: needs a cluster (the manifests are validated by "
                       "tests/e2e/test_ops_deploy.py)")

    def external(self, cmd: Command) -> None:
        self.note(cmd, "not run: needs a system service (root, systemd or Redis)")

    def noop(self, cmd: Command) -> None:
        pass


RULES: dict[str, Callable[[BlockRunner, Command], None]] = {
    "pip": BlockRunner.pip, "reclusterd": BlockRunner.reclusterd, "curl": BlockRunner.curl,
    "locust": BlockRunner.locust, "kill": BlockRunner.kill, "cd": BlockRunner.cd,
    "docker": BlockRunner.docker, "cp": BlockRunner.cp, "systemctl": BlockRunner.external,
    "redis-server": BlockRunner.external, "echo": BlockRunner.noop,
    "kubectl": BlockRunner.kubectl,
}
