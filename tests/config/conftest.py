"""Fixtures for the config tests: a copy of testing.yaml and real config server processes."""

import os
import signal
import socket

import pytest


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port():
    """A function returning a loopback port nothing listens on."""
    return free_port


@pytest.fixture
def config_file(data_copy):
    """A writable copy of the shared testing.yaml in tmp_path."""
    return data_copy('testing.yaml')


@pytest.fixture
def start_server(monkeypatch):
    """Return a function that starts a config server process on a free loopback port.

    The client is pointed at the newest server through PANOPTES_CONFIG_PORT;
    every server is stopped (killed if it will not stop) after the test.
    """
    from panoptes_cli.config.server import config_server

    processes = []

    def start(config_file, port=None, **options):
        options.setdefault('load_local', True)
        process = config_server(str(config_file), host='127.0.0.1', port=port or free_port(),
                                **options)
        processes.append(process)
        monkeypatch.setenv('PANOPTES_CONFIG_PORT', str(process.port))
        return process

    yield start
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(10)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
            process.join(5)


@pytest.fixture
def server(start_server, config_file):
    """A config server for a copy of testing.yaml, not saving changes."""
    return start_server(config_file)
