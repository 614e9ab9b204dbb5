"""TheSkyX client against a local TCP server on 127.0.0.1 that answers like TheSkyX."""

import json
import socket
import threading
import time

import pytest

from panoptes_cli.error import BadConnection, TheSkyXError, TheSkyXKeyError, TheSkyXTimeout
from panoptes_cli.theskyx import TheSkyX

STATUS_OK = '|No error. Error = 0.'


def script(body: str) -> str:
    """A script as TheSkyX clients send them."""
    return f'/* Java Script */\n/* Socket Start Packet */\n{body}\n/* Socket End Packet */\n'


class FakeTheSkyX:
    """TheSkyX's script server, as far as these tests need: it keys its answer on the script."""

    def __init__(self):
        self.scripts = []
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection):
        with connection:
            received = b''
            while True:
                try:
                    data = connection.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                received += data
                while b'/* Socket End Packet */' in received:
                    one, _, received = received.partition(b'/* Socket End Packet */')
                    text = one.decode()
                    self.scripts.append(text)
                    if not self._answer(connection, text):
                        return

    def _answer(self, connection, text) -> bool:
        if 'Application.version' in text:
            connection.sendall(f'10.5.0{STATUS_OK}'.encode())
        elif 'sky6BadKey' in text:
            connection.sendall(b'TypeError: sky6BadKey is undefined Error = 303.')
        elif 'FindNotThere' in text:
            connection.sendall(b'undefined|Object not found. Error = 250.')
        elif 'LongAnswer' in text:
            answer = json.dumps({'stars': [{'name': f'star {n}', 'mag': n / 10}
                                           for n in range(300)], 'note': 'a|b'})
            payload = (answer + STATUS_OK).encode()
            for start in range(0, len(payload), 1500):
                connection.sendall(payload[start:start + 1500])
                time.sleep(0.03)
        elif 'NoStatus' in text:
            connection.sendall(b'plain answer')
        elif 'Hangup' in text:
            return False
        # Anything else ('Silent'): no answer at all.
        return True

    def close(self):
        # shutdown() wakes the blocked accept(); close() alone would not.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)


@pytest.fixture
def server():
    fake = FakeTheSkyX()
    yield fake
    fake.close()


@pytest.fixture
def sky(server):
    client = TheSkyX(host='127.0.0.1', port=server.port)
    yield client
    client.disconnect()


def test_defaults():
    client = TheSkyX(connect=False)
    assert (client._host, client._port, client.is_connected) == ('localhost', 3040, False)


def test_query_and_answer(sky, server):
    assert sky.is_connected
    sky.write(script('var Out = Application.version;'))
    assert sky.read() == '10.5.0'
    assert 'var Out = Application.version;' in server.scripts[0]


def test_several_queries_on_one_connection(sky):
    for _ in range(3):
        sky.write(script('Out = Application.version;'))
        assert sky.read(timeout=2) == '10.5.0'


def test_long_answer_in_several_segments(sky):
    sky.write(script('Out = LongAnswer();'))
    answer = json.loads(sky.read(timeout=5))
    assert len(answer['stars']) == 300 and answer['note'] == 'a|b'


def test_key_error(sky):
    sky.write(script('Out = sky6BadKey.x;'))
    with pytest.raises(TheSkyXKeyError, match='Error = 303'):
        sky.read()


def test_reported_error(sky):
    sky.write(script('sky6StarChart.Find("FindNotThere");'))
    with pytest.raises(TheSkyXError, match='Object not found. Error = 250.') as info:
        sky.read()
    assert not isinstance(info.value, TheSkyXKeyError)


@pytest.mark.slow
def test_answer_without_status(sky):
    sky.write(script('Out = NoStatus();'))
    assert sky.read(timeout=3) == 'plain answer'


def test_timeout(sky):
    sky.write(script('Silent();'))
    started = time.monotonic()
    with pytest.raises(TheSkyXTimeout, match='did not answer within 0.3 s'):
        sky.read(timeout=0.3)
    assert time.monotonic() - started < 3
    assert sky.is_connected


def test_server_hangs_up(sky):
    sky.write(script('Hangup();'))
    with pytest.raises(BadConnection, match='closed the connection'):
        sky.read(timeout=3)
    assert not sky.is_connected
    with pytest.raises(BadConnection, match='Not connected'):
        sky.write(script('Out = Application.version;'))


def test_reconnect_after_disconnect(sky):
    sky.disconnect()
    assert not sky.is_connected
    sky.connect()
    sky.write(script('Out = Application.version;'))
    assert sky.read() == '10.5.0'


def test_refused_connection_is_not_an_exception():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    client = TheSkyX(host='127.0.0.1', port=port)
    assert not client.is_connected
    with pytest.raises(BadConnection, match=f'Not connected to TheSkyX at 127.0.0.1:{port}'):
        client.read()


def test_write_takes_text(sky):
    with pytest.raises(TypeError):
        sky.write(b'bytes')
