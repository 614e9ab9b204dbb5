"""A throwaway PostgreSQL server for the tests: Debian's binaries, a loopback port, a tmp dir.

initdb and pg_ctl refuse to run as root: as root they run as the ``postgres``
account the Debian package creates, in a directory given to it.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Debian keeps the server binaries off PATH, one directory per major version.
_BIN_DIRS = sorted(glob.glob('/usr/lib/postgresql/*/bin'), key=lambda d: int(d.split('/')[-2]))


def find_server_bin() -> Path | None:
    """Return the directory holding initdb and pg_ctl (the newest version), or None."""
    for directory in reversed(_BIN_DIRS):
        if os.access(Path(directory, 'initdb'), os.X_OK):
            return Path(directory)
    found = shutil.which('initdb')
    return Path(found).parent if found else None


class PostgresServer:
    """A PostgreSQL cluster made by initdb in a fresh directory, served on 127.0.0.1:port."""

    def __init__(self, bin_dir: Path, port: int, settings: dict | None = None):
        self.bin_dir = bin_dir
        self.port = port
        self.settings = settings or {}
        self.root = Path(tempfile.mkdtemp(prefix='panoptes-pg-'))
        self.data = self.root / 'data'
        self._as = {}
        if os.geteuid() == 0:
            # PostgreSQL will not run as root: hand the directory to the postgres account.
            shutil.chown(self.root, 'postgres', 'postgres')
            self._as = {'user': 'postgres', 'group': 'postgres', 'extra_groups': []}

    @property
    def url(self) -> str:
        return f'postgresql://postgres@127.0.0.1:{self.port}/postgres'

    def _run(self, *args, timeout=120):
        return subprocess.run([str(self.bin_dir / args[0]), *map(str, args[1:])],
                              capture_output=True, text=True, timeout=timeout, check=True,
                              cwd=self.root, **self._as)

    def start(self) -> 'PostgresServer':
        self._run('initdb', '-D', self.data, '-U', 'postgres', '--auth=trust',
                  '--encoding=UTF8', '--locale=C.UTF-8', '--no-sync')
        options = {'listen_addresses': '127.0.0.1', 'port': self.port,
                   'unix_socket_directories': '', 'max_connections': 100, **self.settings}
        with open(self.data / 'postgresql.conf', 'a') as conf:
            conf.writelines(f"{key} = '{value}'\n" for key, value in options.items())
        try:
            self._run('pg_ctl', '-D', self.data, '-l', self.root / 'server.log', '-w',
                      '-t', '60', 'start')
        except subprocess.CalledProcessError as err:
            log = (self.root / 'server.log').read_text() if (self.root / 'server.log').exists() else ''
            raise RuntimeError(f'PostgreSQL did not start: {err.stderr}\n{log}') from err
        return self

    def stop(self) -> None:
        try:
            self._run('pg_ctl', '-D', self.data, '-m', 'immediate', '-w', 'stop', timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
