"""Fixtures shared by every test: an isolated environment, the shared data, the CLI."""

import os
import pty
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'
# panoptes-utils 0.2.29 in a throwaway venv outside the repo, for benchmarks (see README).
BASELINE_VENV = Path(os.environ.get('PANOPTES_BASELINE_VENV', '/tmp/baseline-venv'))
# CI sets CI=true: there every external program the README installs must be present.
IN_CI = os.environ.get('CI', '').lower() == 'true'


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def require_program(name: str) -> str:
    """Return the path of an external program; fail in CI, skip elsewhere, if it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f'{name} is not installed; the README set-up installs it'
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def python_output(code: str) -> str:
    """Run ``code`` in a fresh Python (this venv's) and return what it printed, stripped."""
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def process_alive(pid: int) -> bool:
    """True if the process runs (a zombie nobody has reaped yet does not)."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(')', 1)[1].split()[0] != 'Z'


def fake_program(tmp_path: Path, name: str, body: str) -> Path:
    """Write a shell script standing in for program ``name`` (to hang on purpose); return its directory."""
    directory = tmp_path / 'bin'
    directory.mkdir(exist_ok=True)
    script = directory / name
    script.write_text(f'#!/bin/sh\n{body}\n')
    script.chmod(0o755)
    return directory


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Point every path and service the core resolves through env vars at tmp_path."""
    pandir = tmp_path / 'pandir'
    pandir.mkdir()
    monkeypatch.setenv('PANDIR', str(pandir))
    monkeypatch.setenv('PANOPTES_CONFIG_HOST', '127.0.0.1')
    # A port nothing listens on, so no test talks to a real server by accident.
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', str(free_port()))
    monkeypatch.setenv('PANOPTES_CONFIG_FILE', str(tmp_path / 'no-config-file.yaml'))
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'xdg-data'))
    for name in ('POCSTIME', 'PANOPTES_DEBUG', 'PANOPTES_LOG_LEVEL',
                 'PANOPTES_DB_TYPE', 'PANOPTES_DB_NAME', 'PANOPTES_DB_URL'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return pandir


@pytest.fixture(scope='session')
def postgres_url():
    """The URL of a real PostgreSQL server on a free loopback port, for the whole session."""
    from postgres_server import PostgresServer, find_server_bin

    bin_dir = find_server_bin()
    if bin_dir is None:
        message = 'PostgreSQL server binaries are not installed; ./install.sh test installs them'
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir, free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def shared_data() -> Path:
    """The read-only shared data directory (copy files before changing them)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f'{SHARED_DATA} is missing: the shared/ folder must sit beside the repo')
    return SHARED_DATA


@pytest.fixture
def data_copy(shared_data, tmp_path):
    """Return a function that copies a shared data file into tmp_path and gives its path."""

    def copy(name: str, new_name: str | None = None) -> Path:
        target = tmp_path / (new_name or Path(name).name)
        shutil.copy(shared_data / name, target)
        target.chmod(0o644)
        return target

    return copy


@pytest.fixture
def cli():
    """Invoke ``panoptes`` in process; returns Click's Result (output, stderr, exit_code)."""
    from typer.testing import CliRunner

    from panoptes_cli.commands.main import app

    runner = CliRunner()

    def invoke(*args, input=None, env=None):
        return runner.invoke(app, [str(arg) for arg in args], input=input, env=env)

    return invoke


@pytest.fixture
def run_panoptes():
    """Run the installed ``panoptes`` executable in a subprocess."""

    def run(*args, input=None, env=None, timeout=120, check=False):
        executable = shutil.which('panoptes') or pytest.fail('panoptes is not installed')
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run([executable, *map(str, args)], input=input, env=full_env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    return run


@pytest.fixture
def run_with_terminal_stderr():
    """Run ``panoptes`` with stdout piped and stderr on a pseudo-terminal.

    Returns (exit status, stdout text, bytes shown on the terminal): what a user sees
    when redirecting a command's data while watching its progress.
    """

    def run(*args, env=None, timeout=60):
        executable = shutil.which('panoptes') or pytest.fail('panoptes is not installed')
        leader, follower = pty.openpty()
        proc = subprocess.Popen([executable, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=follower, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, COLUMNS='100', TERM='xterm', **(env or {})))
        os.close(follower)
        shown = b''
        try:
            while chunk := _read_terminal(leader):
                shown += chunk
            stdout, _ = proc.communicate(timeout=timeout)
        finally:
            os.close(leader)
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, stdout.decode(), shown

    return run


def _read_terminal(fd: int) -> bytes:
    """Read what a pseudo-terminal shows; b'' once the other side has closed (EIO)."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b''


@pytest.fixture
def logged_warnings():
    """The messages panoptes_cli logs at WARNING or above while the test runs."""
    from panoptes_cli.logging import logger

    messages = []
    logger.enable('panoptes_cli')
    sink = logger.add(lambda message: messages.append(message.record['message']), level='WARNING')
    yield messages
    logger.remove(sink)
    logger.disable('panoptes_cli')


class DaskCluster:
    """A real Dask scheduler and worker processes on loopback, for the --scheduler tests.

    Workers run without a nanny, so killing one takes it away for good (as a
    crashed host would); ``env`` changes a worker's environment (e.g. a PATH
    without fpack).
    """

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.address = f'tcp://127.0.0.1:{self.port}'
        self.scheduler = self._start('distributed.cli.dask_scheduler', '--host', '127.0.0.1',
                                     '--port', str(self.port), '--no-dashboard')
        self.workers: list[subprocess.Popen] = []

    def _start(self, module, *args, env=None):
        import sys

        log = open(self.tmp_path / f'dask-{len(list(self.tmp_path.glob("dask-*")))}.log', 'wb')
        # Temporary files of the tasks stay here: a worker killed mid-task leaves them behind.
        scratch = self.tmp_path / 'tmp'
        scratch.mkdir(exist_ok=True)
        with log:
            return subprocess.Popen([sys.executable, '-m', module, *args], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, TMPDIR=str(scratch), **(env or {})))

    def add_worker(self, env=None) -> subprocess.Popen:
        """Start one single-threaded worker process and wait until the scheduler has it."""
        worker = self._start('distributed.cli.dask_worker', self.address, '--nthreads', '1',
                             '--no-nanny', '--no-dashboard', '--host', '127.0.0.1',
                             '--memory-limit', '0', '--local-directory', str(self.tmp_path),
                             env=env)
        self.workers.append(worker)
        self.wait_for_workers(len([w for w in self.workers if w.poll() is None]))
        return worker

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def two_worker_cluster(tmp_path_factory):
    """Yield a Dask scheduler with two workers on loopback; stop them afterwards."""
    cluster = DaskCluster(tmp_path_factory.mktemp('dask'))
    try:
        cluster.add_worker()
        cluster.add_worker()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def dask_cluster(tmp_path_factory):
    """A Dask scheduler with two workers on loopback, for one test."""
    yield from two_worker_cluster(tmp_path_factory)
