"""Run Flywheel on one machine: migrate, seed the demo, then the web server, a Celery worker and beat.

Started by `make run`. The three processes run under this supervisor with prefixed output. Ctrl-C
(SIGINT), SIGTERM or SIGHUP stops them all (a second Ctrl-C kills them at once); when one of them dies,
the others are stopped and the supervisor exits non-zero. Every setting comes from the environment as
usual (DATABASE_URL, CELERY_BROKER_URL, FLYWHEEL_DATA_DIR, FLYWHEEL_CELERY_QUEUE, …), plus PORT (default
8000) and WEB_CONCURRENCY (gunicorn processes, default 2) for this runner.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_SECONDS = 20.0
COLORS = {"web": "36", "worker": "33", "beat": "35", "setup": "32", "run": "1"}
PR_SET_PDEATHSIG = 1


class Output:
    """Write lines with a fixed-width name prefix, coloured on a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.color = stream.isatty() and not os.environ.get("NO_COLOR")
        self.broken = False

    def line(self, name: str, text: str) -> None:
        if self.broken:
            return
        label = f"{name:<6}|"
        if self.color:
            label = f"\033[{COLORS.get(name, '0')}m{label}\033[0m"
        try:
            self.stream.write(f"{label} {text}\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # Whoever read the output is gone (e.g. a pager stopped by the same Ctrl-C): keep supervising.
            self.broken = True


@dataclass
class Child:
    """One supervised process, the leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    pending: bytes = b""
    returncode: int | None = None
    output_open: bool = True


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child should the supervisor itself be killed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; return False when it no longer exists."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run_setup(command: list[str], env: dict[str, str], out: Output) -> list[str]:
    """Run one setup command with prefixed output; return its lines, raise CalledProcessError on failure."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines = completed.stdout.splitlines()
    for text in lines:
        out.line("setup", text)
    completed.check_returncode()
    return lines


def _banner(out: Output, *, port: int, logins: list[str], settings: Any) -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        where_db = f"SQLite {database['NAME']}"
    else:
        where_db = f"{database['ENGINE'].rsplit('.', 1)[-1]} {database.get('HOST') or 'local'}/{database['NAME']}"
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("filesystem"):
        where_broker = f"filesystem {settings.BROKER_DIR}"
    else:  # never print a password that is part of the URL
        scheme, _, rest = broker.partition("://")
        where_broker = f"{scheme}://{rest.rpartition('@')[2]}"
    rule = "=" * 78
    for text in [
        rule,
        f"Flywheel: http://127.0.0.1:{port}/",
        *logins,
        f"Data folder: {settings.DATA_DIR}",
        f"Database:    {where_db}",
        f"Broker:      {where_broker} (queue {settings.CELERY_TASK_DEFAULT_QUEUE})",
        "Ctrl-C stops the web server, the worker and beat.",
        rule,
    ]:
        out.line("run", text)


def _commands(port: int, settings: Any) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [
            python, "-m", "gunicorn", "flywheel.wsgi:application",
            "--bind", f"127.0.0.1:{port}",
            "--workers", os.environ.get("WEB_CONCURRENCY") or "2", "--threads", "2",
            "--graceful-timeout", "10", "--timeout", "120", "--no-control-socket",
            "--access-logfile", "-", "--error-logfile", "-",
        ],
        "worker": [
            python, "-m", "celery", "-A", "flywheel", "worker",
            "--concurrency=1", "--loglevel=INFO", "-Q", settings.CELERY_TASK_DEFAULT_QUEUE,
            "-n", f"flywheel-{port}@%h", "--without-gossip", "--without-mingle",
        ],
        "beat": [
            python, "-m", "celery", "-A", "flywheel", "beat", "--loglevel=INFO",
            "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME,
        ],
    }  # fmt: skip


class Supervisor:
    """Start the children, copy their output, and stop all of them when asked or when one dies."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.children: list[Child] = []
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.killed = False
        self.exit_code = 0

    def on_signal(self, signum: int, _frame: object) -> None:
        """Only record the signal: the main loop acts on it (writing here could re-enter stdout)."""
        self.signals.append(signum)

    def start(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        for name, command in commands.items():
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_die_with_parent,
            )
            assert process.stdout is not None
            os.set_blocking(process.stdout.fileno(), False)
            child = Child(name, process)
            self.selector.register(process.stdout, selectors.EVENT_READ, child)
            self.children.append(child)
            self.out.line("run", f"started {name} (pid {process.pid}): {' '.join(command[1:])}")

    def running(self) -> list[Child]:
        return [child for child in self.children if child.returncode is None]

    def stop(self, reason: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        self.out.line("run", f"Stopping ({reason}) …")
        # Only the leaders: gunicorn's master and Celery's main process stop their own children.
        for child in self.running():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)

    def kill(self, reason: str) -> None:
        self.out.line("run", f"{reason}: killing {', '.join(child.name for child in self.running())}.")
        self.killed = True
        for child in self.running():
            _signal_group(child.process.pid, signal.SIGKILL)

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if not self.stopping:
                self.stop(f"{signal.Signals(signum).name} received")
            elif not self.killed:
                self.kill("Second signal")

    def pump(self, timeout: float) -> None:
        for key, _events in self.selector.select(timeout):
            child: Child = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                self.selector.unregister(key.fileobj)
                child.output_open = False
                data = b"\n" if child.pending else b""
            child.pending += data
            *complete, child.pending = child.pending.split(b"\n")
            for raw in complete:
                self.out.line(child.name, raw.decode("utf-8", errors="replace").rstrip("\r"))

    def reap(self) -> None:
        for child in self.running():
            code = child.process.poll()
            if code is None:
                continue
            child.returncode = code
            # The group can outlive its leader (orphaned gunicorn or pool processes): end it as well.
            if _signal_group(child.process.pid, 0):
                _signal_group(child.process.pid, signal.SIGKILL)
            if self.stopping:
                self.out.line("run", f"{child.name} stopped (exit code {code}).")
            else:
                self.out.line("run", f"{child.name} exited with code {code}; stopping the others.")
                self.exit_code = 128 - code if code < 0 else (code or 1)
                self.stop(f"{child.name} exited")

    def run(self) -> int:
        while self.running() or any(child.output_open for child in self.children):
            self.pump(0.1)
            self.handle_signals()
            self.reap()
            if not self.running():
                # Whatever is still holding a pipe open was SIGKILLed with its group: drain what is left.
                self.pump(0.1)
                break
            if self.stopping and not self.killed and time.monotonic() > self.stop_deadline:
                self.kill(f"Still running after {STOP_TIMEOUT_SECONDS:.0f}s")
        if self.killed and self.exit_code == 0:
            self.exit_code = 1
        self.out.line("run", "All stopped." if self.exit_code == 0 else f"Stopped; exit code {self.exit_code}.")
        return self.exit_code


def main() -> int:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    from django.conf import settings

    out = Output(sys.stdout)
    port = int(os.environ.get("PORT") or 8000)
    if not _port_free(port):
        out.line("run", f"Port {port} on 127.0.0.1 is in use: stop what runs there or choose another, e.g. PORT=8001.")
        return 2
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    # WhiteNoise serves from the finders, but warns on every start when STATIC_ROOT is missing.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    try:
        _run_setup(["migrate", "--noinput"], env, out)
        seeded = _run_setup(["seed_demo"], env, out)
    except subprocess.CalledProcessError as exc:
        out.line("run", f"Setup failed: `manage.py {' '.join(exc.cmd[2:])}` exited with code {exc.returncode}.")
        return exc.returncode or 1
    except KeyboardInterrupt:
        return 130
    logins: list[str] = []
    for text in seeded:
        if text.startswith("Demo logins") or (logins and text.startswith("  ")):
            logins.append(text)

    supervisor = Supervisor(out)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    _banner(out, port=port, logins=logins, settings=settings)
    supervisor.start(_commands(port, settings), env)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
