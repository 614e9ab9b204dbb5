"""The config server and its client, against real server processes on loopback."""

import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from astropy import units as u

from panoptes_cli.config import client
from panoptes_cli.config.client import get_config, server_is_running, set_config
from panoptes_cli.config.helpers import load_config
from panoptes_cli.config.server import config_server
from panoptes_cli.error import BadConnection, InvalidConfig, Timeout


def request(port, path, body=None, method='POST'):
    """Send one HTTP request (a JSON body) on a new connection; return (status, content type, decoded JSON)."""
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        headers = {} if body is None else {'Content-Type': 'application/json'}
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        text = response.read().decode()
        return response.status, response.getheader('Content-Type'), json.loads(text)
    finally:
        connection.close()


# --- The manual's client examples, with testing.yaml's values ---------------------------

def test_manual_examples(server):
    location = get_config('location')
    assert location == {
        'name': 'Mauna Loa Observatory', 'latitude': 19.54 * u.deg, 'longitude': -155.58 * u.deg,
        'elevation': 3400 * u.m, 'horizon': 30 * u.deg, 'flat_horizon': -6 * u.deg,
        'focus_horizon': -12 * u.deg, 'observe_horizon': -18 * u.deg, 'timezone': 'US/Hawaii',
        'gmt_offset': -600}
    assert get_config(key='name') == 'Testing PANOPTES Unit'
    assert get_config('location.horizon') == 30 * u.deg
    assert get_config(key='location.horizon', parse=False) == '"30.0 deg"'
    assert get_config(key='cameras.devices[1].model') == 'canon_gphoto2'
    assert get_config(key='foobar') is None
    assert get_config(key='foobar', default='baz') == 'baz'
    assert get_config(key='foobar', default=42 * u.meter) == 42 * u.m

    assert set_config('location.horizon', 45) == {'location.horizon': 45}
    assert get_config('location.horizon') == 45
    assert set_config('location.horizon', 45 * u.deg) == {'location.horizon': 45 * u.deg}
    assert get_config('location.horizon') == 45 * u.deg
    assert get_config('location')['horizon'] == 45 * u.deg
    assert set_config('location.horizon', '35 deg') == {'location.horizon': 35 * u.deg}
    assert set_config('location.horizon', '30 deg', parse=False) == {'location.horizon': '30.0 deg'}


def test_whole_config_matches_the_file(server, config_file):
    assert get_config() == load_config(config_file)
    assert get_config(None, parse=False).startswith('{"name": "Testing PANOPTES Unit"')


def test_set_creates_parents_and_lists_can_be_indexed(server):
    assert set_config('scheduler.fields.south', {'file': 'south.yaml'}) == {
        'scheduler.fields.south': {'file': 'south.yaml'}}
    assert get_config('scheduler') == {'type': 'dispatch', 'fields_file': 'simulator.yaml',
                                       'check_file': False,
                                       'fields': {'south': {'file': 'south.yaml'}}}
    set_config('cameras.devices[1].model', 'zwo')
    assert get_config('cameras.devices') == [{'model': 'canon_gphoto2'}, {'model': 'zwo'}]
    set_config('cameras.devices[-1]', {'model': 'sbig', 'port': None})
    assert get_config('cameras.devices[1]') == {'model': 'sbig', 'port': None}


def test_values_keep_their_types(server):
    values = {'t.int': 3, 't.float': 2.5, 't.bool': False, 't.none': None, 't.list': [1, 'a'],
              't.str': 'hello', 't.time': '2020-01-01T12:00:00', 't.nested': {'a': [{'b': 1}]}}
    for key, value in values.items():
        set_config(key, value)
    got = get_config('t')
    assert got['int'] == 3 and got['float'] == 2.5 and got['bool'] is False
    assert got['list'] == [1, 'a'] and got['str'] == 'hello'
    assert got['nested'] == {'a': [{'b': 1}]}
    assert got['time'].isoformat() == '2020-01-01T12:00:00'
    # A key whose value is null reads as missing.
    assert get_config('t.none', default='gone') == 'gone'


def test_raw_endpoints_and_payloads(server, config_file):
    port = server.port
    assert request(port, '/get-config', {'key': 'location.horizon'}) == (
        200, 'application/json', '30.0 deg')
    assert request(port, '/get-config?key=location.horizon', method='GET')[2] == '30.0 deg'
    assert request(port, '/get-config', {'key': 'nothing.here'})[2] is None
    assert request(port, '/get-config', {'key': None})[2]['pan_id'] == 'PAN000'
    assert request(port, '/get-config', method='GET')[2]['pan_id'] == 'PAN000'
    assert request(port, '/set-config', {'location.horizon': '45 deg', 'new.key': [1]}) == (
        200, 'application/json', {'location.horizon': '45.0 deg', 'new.key': [1]})
    assert request(port, '/heartbeat', method='GET') == (200, 'application/json', True)
    assert request(port, '/heartbeat', {'key': 'new.key'})[2] == [1]
    assert request(port, '/reset-config', {'reset': True})[2] == {
        'success': True, 'msg': f'Configuration reset from {config_file}'}
    assert request(port, '/get-config', {'key': 'location.horizon'})[2] == '30.0 deg'


@pytest.mark.parametrize('path, body, status, message', [
    ('/set-config', '{bad json', 400, 'invalid JSON in the request body: Expecting property name'),
    ('/set-config', '[1, 2]', 400, 'the request body must be a JSON object of settings'),
    ('/set-config', '{}', 400, 'the request body must be a JSON object of settings'),
    ('/set-config', '', 400, 'the request body must be a JSON object of settings'),
    ('/set-config', '{"x": NaN}', 400, 'NaN is not a number JSON allows'),
    ('/set-config', '{"x": 1e400}', 400, '1e400 is too large for a number'),
    ('/set-config', '{"cameras.devices[5].model": "x"}', 400,
     'cannot set cameras.devices[5].model: list index 5 is out of range'),
    ('/set-config', '{"name.first": "x"}', 400, 'cannot set name.first: name is a str'),
    ('/set-config', '{"a..b": 1}', 400, "bad config key 'a..b'"),
    ('/set-config', '{"config_server.running": "no"}', 400,
     'config_server.running must be true or false'),
    ('/get-config', '{"key": 5}', 400, '"key" must be a string'),
    ('/get-config', '"location"', 400, 'the request body must be a JSON object'),
    ('/get-config', '{"key": "a[x]"}', 400, "bad config key 'a[x]'"),
    ('/get-config', b'\xff\xfe', 400, 'invalid JSON in the request body'),
    ('/reset-config', '{}', 400, 'send {"reset": true}'),
    ('/reset-config', '{"reset": true, "load_local": "yes"}', 400, '"load_local" must be'),
    ('/nowhere', '{}', 404, "404 Not Found: Not found: '/nowhere'"),
])
def test_malformed_requests_get_json_errors_and_the_server_stays_up(server, path, body, status,
                                                                   message):
    answer = request(server.port, path, body)
    assert answer[:2] == (status, 'application/json')
    assert answer[2]['success'] is False
    assert message in answer[2]['msg']
    assert server_is_running()
    assert get_config('location.horizon') == 30 * u.deg


def test_wrong_method_oversized_body_and_garbage(server):
    status, content_type, answer = request(server.port, '/reset-config', method='GET')
    assert (status, content_type, answer['success']) == (405, 'application/json', False)
    status, content_type, answer = request(server.port, '/set-config',
                                           '{"x": "' + 'a' * (2 * 1024 * 1024) + '"}')
    assert (status, content_type) == (413, 'application/json')
    assert 'larger than the 1048576 bytes allowed' in answer['msg']
    with socket.create_connection(('127.0.0.1', server.port), timeout=5) as sock:
        sock.sendall(b'\x00\x01GARBAGE / nonsense\r\n\r\n')
        assert sock.recv(1000).startswith(b'HTTP/1.')
    assert server_is_running()
    assert get_config('name') == 'Testing PANOPTES Unit'


def test_a_multi_key_set_is_all_or_nothing(server):
    status, _, answer = request(server.port, '/set-config',
                                {'fresh.key': 1, 'location.horizon': 1, 'cameras.devices[7]': 2})
    assert status == 400 and 'cameras.devices[7]' in answer['msg']
    assert get_config('fresh') is None
    assert get_config('location.horizon') == 30 * u.deg
    status, _, answer = request(server.port, '/set-config', {'b': 1, 'b.c': 2})
    assert status == 400 and 'b is a int, not a mapping' in answer['msg']
    assert get_config('b') is None


def test_client_errors_for_rejected_requests(server):
    with pytest.raises(InvalidConfig, match=r'config server at http://127\.0\.0\.1:\d+: '
                                            r'cannot set name\.x: name is a str'):
        set_config('name.x', 1, strict=True)
    with pytest.raises(InvalidConfig, match="bad config key 'a..b'"):
        get_config('a..b', strict=True)
    with pytest.raises(BadConnection, match='HTTP 404'):
        get_config('name', endpoint='no-such-endpoint', strict=True)


def test_api_logs_rejected_requests_and_returns_as_0_2_29(server, logged_warnings):
    assert set_config('name.x', 1) is None
    assert get_config('a..b', default='fallback') == 'fallback'
    assert "set_config('name.x') changed nothing: config server at" in logged_warnings[0]
    assert "get_config('a..b') returns its default 'fallback'" in logged_warnings[1]


# --- Local files: override, save, reset -------------------------------------------------

def test_local_file_overrides_by_deep_merge(start_server, config_file):
    config_file.with_name('testing_local.yaml').write_text('location:\n  horizon: 45 deg\n')
    start_server(config_file)
    assert get_config('location.horizon') == 45 * u.deg
    assert get_config('location.name') == 'Mauna Loa Observatory'
    start_server(config_file, load_local=False)
    assert get_config('location.horizon') == 30 * u.deg


def test_save_local_writes_each_set_before_answering(start_server, config_file):
    start_server(config_file, save_local=True)
    local = config_file.with_name('testing_local.yaml')
    assert not local.exists()
    set_config('location.horizon', 45 * u.deg)
    # On disk when the answer came back, with the comments of testing.yaml.
    text = local.read_text()
    assert 'horizon: 45.0 deg # targets must be above this to be considered valid.' in text
    assert load_config(local)['location']['horizon'] == 45 * u.deg
    assert load_config(config_file)['location']['horizon'] == 45 * u.deg
    assert 'horizon: 30 deg' in config_file.read_text()


def test_a_failed_save_is_reported(start_server, config_file):
    start_server(config_file, save_local=True)
    # A directory where the local file should go makes the rename fail.
    config_file.with_name('testing_local.yaml').mkdir()
    with pytest.raises(BadConnection, match=r'HTTP 500: location\.horizon not set: cannot save '
                                            r'to .*testing_local\.yaml: Is a directory'):
        set_config('location.horizon', 45 * u.deg, strict=True)
    assert server_is_running()
    # Not acknowledged, so not applied either.
    assert get_config('location.horizon') == 30 * u.deg
    assert not [name for name in os.listdir(config_file.parent) if name.endswith('.tmp')]


def test_no_save_leaves_files_alone(server, config_file):
    before = config_file.read_text()
    set_config('location.horizon', 45 * u.deg)
    assert config_file.read_text() == before
    assert not config_file.with_name('testing_local.yaml').exists()


def test_reset_reloads_files_and_defaults(start_server, config_file):
    start_server(config_file, save_local=True)
    set_config('location.horizon', 45 * u.deg)
    local = config_file.with_name('testing_local.yaml')
    # An edit by hand to the local file is picked up by a reset.
    local.write_text(local.read_text() + 'name: Edited\n')
    answer = client.reset_config()
    assert answer == {'success': True,
                      'msg': f'Configuration reset from {config_file}, {local}'}
    assert get_config('name') == 'Edited'
    assert get_config('location.horizon') == 45 * u.deg
    kept = local.read_text()
    answer = client.reset_config(load_local=False)
    backup = answer['backup']
    assert backup.startswith(f'{local}.') and backup.endswith('.bak')
    assert answer['msg'].endswith(f'; the old local config is kept as {backup}')
    assert Path(backup).read_text() == kept and not local.exists()
    assert get_config('location.horizon') == 30 * u.deg
    assert load_config(config_file)['location']['horizon'] == 30 * u.deg


def test_local_file_holds_only_the_changes(start_server, config_file):
    start_server(config_file, save_local=True)
    local = config_file.with_name('testing_local.yaml')
    set_config('location.horizon', '37 deg')
    set_config('new.key', [1, 2])
    assert local.read_text() == ('location:\n'
                                 '  horizon: 37.0 deg # targets must be above this to be considered valid.\n'
                                 'new:\n  key:\n  - 1\n  - 2\n')
    # A later edit of the main file is not shadowed by the local file.
    config_file.write_text(config_file.read_text().replace('name: Testing PANOPTES Unit', 'name: Renamed'))
    client.reset_config()
    assert get_config('name') == 'Renamed' and get_config('location.horizon') == 37 * u.deg
    # Setting a value back to the main file's drops it from the local file.
    set_config('location.horizon', '30 deg')
    set_config('new.key', [1, 2])
    assert 'location' not in local.read_text()
    assert load_config(config_file)['location']['horizon'] == 30 * u.deg


def test_reset_drops_unsaved_changes(server):
    set_config('location.horizon', 45 * u.deg)
    set_config('brand.new', 1)
    client.reset_config()
    assert get_config('location.horizon') == 30 * u.deg
    assert get_config('brand.new') is None


def test_cannot_save_beside_the_bundled_config(monkeypatch):
    monkeypatch.delenv('PANOPTES_CONFIG_FILE')
    with pytest.raises(InvalidConfig, match='cannot save changes beside the default config'):
        config_server(host='127.0.0.1', port=0, save_local=True)


# --- Durability and concurrency ---------------------------------------------------------

@pytest.mark.slow
def test_kill_9_loses_nothing_that_was_acknowledged(start_server, config_file):
    process = start_server(config_file, save_local=True)
    acknowledged = {}
    stop = threading.Event()

    def setter():
        for index in range(2000):
            if stop.is_set():
                return
            try:
                set_config(f'survivors.k{index}', index, strict=True)
            except BadConnection:
                return
            acknowledged[f'survivors.k{index}'] = index

    thread = threading.Thread(target=setter)
    thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    stop.set()
    thread.join(20)
    assert len(acknowledged) >= 50
    start_server(config_file)
    survivors = get_config('survivors')
    missing = {key for key in acknowledged if key.split('.')[1] not in survivors}
    assert not missing


def run_setters(threads_count, sets_each):
    """Set distinct keys from several threads at once, checking reads in between."""
    errors = []

    def setter(thread_number):
        try:
            for index in range(sets_each):
                set_config(f'threads.t{thread_number}.k{index}', index)
                if index % 50 == 0:
                    assert get_config('location.horizon') == 30 * u.deg
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=setter, args=(number,)) for number in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    return {f't{t}': {f'k{i}': i for i in range(sets_each)} for t in range(threads_count)}


@pytest.mark.slow
def test_concurrent_setters_lose_nothing(server):
    expected = run_setters(8, 200)
    assert get_config('threads') == expected


@pytest.mark.slow
def test_concurrent_saved_setters_lose_nothing(start_server, config_file):
    process = start_server(config_file, save_local=True)
    expected = run_setters(8, 25)
    assert get_config('threads') == expected
    assert load_config(config_file)['threads'] == expected
    process.terminate()
    process.join(10)
    assert process.exitcode == 0
    start_server(config_file)
    assert get_config('threads') == expected


def test_concurrent_updates_of_one_list_are_serialized(server):
    set_config('counters', [0] * 8)

    def setter(slot):
        for value in range(1, 51):
            set_config(f'counters[{slot}]', value)

    threads = [threading.Thread(target=setter, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert get_config('counters') == [50] * 8


# --- Starting and stopping --------------------------------------------------------------

def test_invalid_yaml_at_start_raises_with_file_and_line(tmp_path, config_file):
    config_file.write_text(config_file.read_text().replace('  horizon: 30 deg',
                                                           '  horizon: 30 deg: oops'))
    with pytest.raises(InvalidConfig, match=rf'{config_file}: invalid YAML at line 21, column 18'):
        config_server(str(config_file), host='127.0.0.1', port=0)
    with pytest.raises(InvalidConfig, match=r'missing\.yaml: no such config file'):
        config_server(str(tmp_path / 'missing.yaml'), host='127.0.0.1', port=0)


def test_port_in_use_raises_with_the_reason(server, config_file):
    with pytest.raises(BadConnection, match=rf'cannot listen on 127\.0\.0\.1:{server.port}: '
                                            r'Address already in use'):
        config_server(str(config_file), host='127.0.0.1', port=server.port)
    assert server_is_running()


def test_terminate_stops_cleanly(server):
    assert server.is_alive() and server_is_running()
    server.terminate()
    server.join(10)
    assert server.exitcode == 0
    assert not server_is_running()


def test_stop_server_waits_until_stopped(server):
    client.stop_server()
    assert not server_is_running()
    server.join(10)
    assert server.exitcode == 0
    with pytest.raises(BadConnection, match='connection refused'):
        client.stop_server()


def test_stop_server_times_out_if_the_server_keeps_answering(monkeypatch, server):
    monkeypatch.setattr(client, 'server_is_running', lambda host, port: True)
    with pytest.raises(Timeout, match='still running 0.2 s after being asked to stop'):
        client.stop_server(timeout=0.2)


def test_auto_start_false_returns_an_unstarted_process(config_file, unused_port):
    port = unused_port()
    process = config_server(str(config_file), host='127.0.0.1', port=port, auto_start=False)
    assert not process.is_alive() and process.url == f'http://127.0.0.1:{port}'
    process.start()
    try:
        deadline = time.monotonic() + 30
        while not server_is_running(port=port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get_config('name', port=port) == 'Testing PANOPTES Unit'
    finally:
        process.terminate()
        process.join(10)
    assert process.exitcode == 0


def test_access_log_to_a_file(start_server, config_file, tmp_path):
    log_path = tmp_path / 'access.log'
    with open(log_path, 'a') as log:
        start_server(config_file, access_logs=log)
        get_config('name')
        set_config('a', 1)
    deadline = time.monotonic() + 5
    while log_path.read_text().count('\n') < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = log_path.read_text().splitlines()
    assert lines[0] == '127.0.0.1 "POST /get-config" 200'
    assert lines[1] == '127.0.0.1 "POST /set-config" 200'


# --- The client: addresses, connections, time-outs --------------------------------------

def test_server_address_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv('PANOPTES_CONFIG_HOST', 'envhost')
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', '7000')
    assert client.server_address() == ('envhost', 7000)
    assert client.server_address('arghost', 8000) == ('arghost', 8000)
    monkeypatch.delenv('PANOPTES_CONFIG_HOST')
    monkeypatch.delenv('PANOPTES_CONFIG_PORT')
    assert client.server_address() == ('localhost', 6563)
    dotenv_dir = tmp_path / 'with-dotenv'
    dotenv_dir.mkdir()
    (dotenv_dir / '.env').write_text('PANOPTES_CONFIG_HOST=dotenvhost\nPANOPTES_CONFIG_PORT=7100\n')
    monkeypatch.chdir(dotenv_dir)
    assert client.server_address() == ('dotenvhost', 7100)
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', '7200')
    assert client.server_address() == ('dotenvhost', 7200)
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', 'http')
    with pytest.raises(InvalidConfig, match="bad config server port 'http'"):
        client.server_address()


def test_unreachable_server(monkeypatch, logged_warnings):
    port = os.environ['PANOPTES_CONFIG_PORT']
    with pytest.raises(BadConnection) as info:
        get_config('name', strict=True)
    assert info.value.msg == (f"config server at http://127.0.0.1:{port}: connection refused; "
                              "start it with 'panoptes config run'")
    with pytest.raises(BadConnection, match='connection refused'):
        set_config('name', 'x', strict=True)
    assert server_is_running() is False
    # The Python API, as 0.2.29's: a warning, then the default (get) or None (set).
    assert get_config('name', default='PAN000') == 'PAN000'
    assert set_config('name', 'x') is None
    assert len(logged_warnings) == 2 and all('connection refused' in m for m in logged_warnings)


@pytest.mark.slow
def test_calls_time_out_instead_of_hanging(monkeypatch):
    monkeypatch.setattr(client, 'TIMEOUT', 0.5)
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(BadConnection, match='no answer within 0.5 s'):
            get_config('name', port=port, strict=True)
        assert time.monotonic() - started < 5


@pytest.mark.slow
def test_connection_is_reused_and_survives_a_restart(start_server, config_file):
    first = start_server(config_file)
    get_config('name')
    connection = client._local.pool[('127.0.0.1', first.port)]
    local_address = connection.sock.getsockname()
    for _ in range(5):
        get_config('name')
    assert connection.sock.getsockname() == local_address
    first.terminate()
    first.join(10)
    start_server(config_file, port=first.port)
    # The kept-alive connection is dead now; the client reconnects once, silently.
    assert get_config('name') == 'Testing PANOPTES Unit'


def test_each_thread_has_its_own_connection(server):
    sockets = []

    def remember():
        get_config('name')
        sockets.append(client._local.pool[('127.0.0.1', server.port)].sock.getsockname())

    threads = [threading.Thread(target=remember) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(sockets)) == 3
