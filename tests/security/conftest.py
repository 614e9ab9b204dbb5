"""Fixtures for the attack tests: a real ``panoptes config run`` process on a free loopback port."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import SHARED_DATA, free_port


class ServerProcess:
    """A ``panoptes config run`` process, with a raw HTTP helper that sends exactly what a test says."""

    def __init__(self, config_file, port, process):
        self.config_file = config_file
        self.local_file = config_file.with_name(f'{config_file.stem}_local.yaml')
        self.port = port
        self.process = process

    def request(self, path, body=None, headers=None, method='POST', timeout=10):
        """Send one request on a new connection; return (status, decoded JSON answer)."""
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b'null')
        finally:
            connection.close()

    def post_json(self, path, body, **headers):
        return self.request(path, body, {'Content-Type': 'application/json', **headers})

    def get(self, key):
        """The value the server holds at ``key`` (asked the way our client asks)."""
        status, answer = self.post_json('/get-config', {'key': key})
        assert status == 200, answer
        return answer

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _server_starter(directory):
    """Return (start, servers): start() runs ``panoptes config run`` (saving changes) on a copy of testing.yaml."""
    servers = []

    def start(*options, config_file=None):
        if config_file is None:
            config_file = directory / 'testing.yaml'
            if not config_file.exists():
                shutil.copy(SHARED_DATA / 'testing.yaml', config_file)
        port = free_port()
        process = subprocess.Popen(
            [shutil.which('panoptes'), 'config', 'run', str(config_file), '--port', str(port),
             '--save-local', *options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = ServerProcess(config_file, port, process)
        servers.append(server)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                return server  # the caller checks why it did not start
            try:
                if server.request('/heartbeat', method='GET', timeout=1)[1] is True:
                    return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f'config server on port {port} did not start within 60 s')
            time.sleep(0.05)

    return start, servers


@pytest.fixture
def start_config_server(tmp_path):
    """A function starting config servers for this test (stopped after it)."""
    start, servers = _server_starter(tmp_path)
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def config_server_process(start_config_server):
    """A config server of this test's own, free to change."""
    return start_config_server()


@pytest.fixture(scope='module')
def shared_server(tmp_path_factory):
    """One config server for a module's tests that must leave it unchanged (they check that)."""
    start, servers = _server_starter(tmp_path_factory.mktemp('shared-server'))
    yield start()
    for server in servers:
        server.stop()


@pytest.fixture
def client_env(config_server_process):
    """Environment pointing clients at the running server."""
    return dict(os.environ, PANOPTES_CONFIG_HOST='127.0.0.1',
                PANOPTES_CONFIG_PORT=str(config_server_process.port))
