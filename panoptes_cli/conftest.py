"""Doctest set-up: the core's doctests never touch the host's PANDIR or config server.

pytest runs the docstring examples with ``--doctest-modules``; this gives each one a
scratch PANDIR and working directory, and points the config client at a closed port.
"""

import socket

import pytest


@pytest.fixture(autouse=True)
def isolated_doctest_env(tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        closed_port = sock.getsockname()[1]
    (tmp_path / 'pandir').mkdir()
    monkeypatch.setenv('PANDIR', str(tmp_path / 'pandir'))
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'xdg-data'))
    monkeypatch.setenv('PANOPTES_CONFIG_HOST', '127.0.0.1')
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', str(closed_port))
    for name in ('POCSTIME', 'PANOPTES_CONFIG_FILE', 'PANOPTES_DB_TYPE', 'PANOPTES_DB_NAME'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
