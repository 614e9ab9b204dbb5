"""The PySerial URL handlers: no_op://, buffers://, hooked:// and the simulated Arduino boards."""

import json
import os
import queue
import select
import termios
import threading
import time

import pytest
import serial
from serial import serialutil

import panoptes_cli.serial_handlers as handlers
from panoptes_cli.error import PanError
from panoptes_cli.serial_handlers import NoOpSerial, protocol_buffers as pb, protocol_hooked
from panoptes_cli.serial_handlers.protocol_arduinosimulator import (
    ArduinoSimulator, FakeArduinoSerialHandler, PtyBoard, SimulatedBoard, board_message)

# Reports take 0.35 s at 9600 baud; twice a second keeps the tests short.
FAST = 'report_interval=0.5'


@pytest.fixture(autouse=True)
def registered():
    handlers.register()
    pb.ResetBuffers()
    yield
    handlers.register()


def read_reports(device, count, deadline=10.0):
    """Read ``count`` complete JSON reports from an open simulated board, skipping fragments."""
    reports = []
    end = time.monotonic() + deadline
    while len(reports) < count:
        assert time.monotonic() < end, f'only {len(reports)} reports in {deadline} s'
        line = device.readline()
        try:
            reports.append(json.loads(line))
        except ValueError:
            continue
    return reports


# -- registration, no_op://, hooked:// ------------------------------------------------------

def test_import_registers_the_package():
    assert handlers.PACKAGE == 'panoptes_cli.serial_handlers'
    assert serial.protocol_handler_packages.count(handlers.PACKAGE) == 1
    handlers.register()
    assert serial.protocol_handler_packages.count(handlers.PACKAGE) == 1


def test_serial_data_registers_again_after_removal():
    from panoptes_cli.rs232 import SerialData

    serial.protocol_handler_packages.remove(handlers.PACKAGE)
    with pytest.raises(ValueError):
        serial.serial_for_url('no_op://')
    assert SerialData('no_op://').is_connected


def test_no_op_device():
    device = serial.serial_for_url('no_op://', timeout=0)
    assert isinstance(device, NoOpSerial)
    assert device.port == 'no_op://'
    assert (device.is_open, device.in_waiting, device.read(5), device.write(b'abc')) \
        == (True, 0, b'', 0)
    device.reset_input_buffer()
    device.reset_output_buffer()
    device.baudrate = 19200     # settings changes reach the no-op _reconfigure_port
    device.close()
    with pytest.raises(serialutil.PortNotOpenError):
        device.read()
    with pytest.raises(serialutil.PortNotOpenError):
        device.write(b'x')


def test_hooked_uses_the_test_function(monkeypatch):
    calls = []

    class Loud(NoOpSerial):
        def read(self, size=1):
            return b'!' * size

    def class_for_url(url):
        calls.append(url)
        return url.replace('hooked://', 'hooked://rewritten/'), Loud

    monkeypatch.setattr(protocol_hooked, 'serial_class_for_url', class_for_url)
    device = serial.serial_for_url('hooked://x')
    assert calls == ['hooked://x']
    assert device.port == 'hooked://rewritten/x'
    assert device.read(3) == b'!!!'


def test_hooked_example_returns_current_serial_class(monkeypatch):
    assert protocol_hooked.ExampleSerialClassForUrl('hooked://a') == ('hooked://a', NoOpSerial)

    class Other(NoOpSerial):
        pass

    monkeypatch.setattr(protocol_hooked, 'Serial', Other)
    assert type(serial.serial_for_url('hooked://a')) is Other


# -- buffers:// ---------------------------------------------------------------------------

def test_manual_serial_data_example():
    from panoptes_cli.rs232 import SerialData

    device_listener = SerialData(port='buffers://')
    pb.ResetBuffers()
    assert device_listener.is_connected
    assert device_listener.port == 'buffers://'
    pb.SetRBufferValue(b'emit event')
    assert device_listener.read() == 'emit event'
    assert device_listener.write('ack event') == 9
    assert pb.GetWBufferValue() == b'ack event'


def test_buffers_work_without_a_manual_reset():
    pb._r_buffer = pb.io.BytesIO()   # as at import time
    device = serial.serial_for_url('buffers://')
    assert device.in_waiting == 0
    assert device.read(10) == b''
    assert pb.GetWBufferValue() == b''


def test_buffers_read_write_and_reset():
    pb.ResetBuffers(bytearray(b'abcdef'))
    device = serial.serial_for_url('buffers://')
    assert device.read(2) == b'ab'
    assert device.in_waiting == 4
    device.reset_input_buffer()
    assert device.in_waiting == 0
    device.write(b'one ')
    device.write(bytearray(b'two'))
    assert pb.GetWBufferValue() == b'one two'
    pb.ResetBuffers()
    assert pb.GetWBufferValue() == b''


def test_buffers_reject_text():
    with pytest.raises(TypeError):
        pb.SetRBufferValue('text')
    device = serial.serial_for_url('buffers://')
    with pytest.raises(TypeError):
        device.write('text')
    device.close()
    with pytest.raises(serialutil.PortNotOpenError):
        device.in_waiting


def test_buffers_are_thread_safe():
    device = serial.serial_for_url('buffers://')

    def writer(tag):
        for _ in range(500):
            device.write(tag * 4)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in (b'a', b'b', b'c')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    value = pb.GetWBufferValue()
    assert len(value) == 3 * 500 * 4
    assert all(value[i:i + 4] in (b'aaaa', b'bbbb', b'cccc') for i in range(0, len(value), 4))


# -- the simulated boards -----------------------------------------------------------------

def open_board(query, **settings):
    settings.setdefault('baudrate', 9600)
    settings.setdefault('timeout', 3)
    return serial.serial_for_url(f'arduinosimulator://?{query}', **settings)


@pytest.mark.slow
def test_telemetry_reports():
    device = open_board(f'board=telemetry&{FAST}')
    try:
        first, second, third = read_reports(device, 3)
    finally:
        device.close()
    assert first['name'] == 'telemetry_board'
    for field in ('power', 'current', 'amps', 'humidity', 'temperature', 'temp_00', 'ver'):
        assert field in first
    assert set(first['power']) == {'computer', 'fan', 'mount', 'cameras', 'weather', 'main'}
    assert set(first['current']) == set(first['amps']) == {'main', 'fan', 'mount', 'cameras'}
    assert len(first['temperature']) == 3
    assert second['report_num'] == first['report_num'] + 1
    assert third['report_num'] == second['report_num'] + 1
    assert 450 <= third['millis'] - second['millis'] <= 550
    assert first['current']['main'] > sum(first['current'][k] for k in ('fan', 'mount', 'cameras'))


@pytest.mark.slow
def test_camera_and_json_object_boards():
    device = open_board(f'board=camera&{FAST}')
    try:
        (camera,) = read_reports(device, 1)
    finally:
        device.close()
    assert camera['name'] == 'camera_board'
    assert camera['camera_00'] == camera['camera_01'] == 1
    assert set(camera['accelerometer']) == {'x', 'y', 'z', 'o'}
    device = open_board(f'board=json_object&{FAST}')
    try:
        (empty,) = read_reports(device, 1)
    finally:
        device.close()
    assert set(empty) == {'millis', 'report_num'}


@pytest.mark.slow
def test_relay_commands_take_effect():
    device = open_board(f'board=telemetry&{FAST}')
    try:
        before = read_reports(device, 1)[0]
        device.write(b'fan,off\n')
        device.write(b'2,0\r\n')           # mount, by index, with a CRLF
        device.flush()
        # The report already being sent predates the command; the next one shows it.
        after = read_reports(device, 2)[-1]
        device.write(b'fan,toggle\nmain,0\n')
        dark = read_reports(device, 2)[-1]
    finally:
        device.close()
    assert before['power']['fan'] == 1 and before['current']['fan'] > 0
    assert after['power']['fan'] == 0 and after['power']['mount'] == 0
    assert after['current']['fan'] == after['current']['mount'] == 0
    assert after['amps']['fan'] == after['amps']['mount'] == 0
    assert after['current']['main'] < before['current']['main']
    assert dark['power']['fan'] == 1 and dark['power']['main'] == 0
    assert all(value == 0 for value in dark['current'].values())


@pytest.mark.slow
def test_camera_relays_and_bad_commands():
    device = open_board(f'board=camera&{FAST}')
    try:
        read_reports(device, 1)
        device.write(b'camera_00,off\nnonsense\nfan,off\ncamera_01,maybe\n' + b'x' * 100)
        report = read_reports(device, 2)[-1]
    finally:
        device.close()
    assert (report['camera_00'], report['camera_01']) == (0, 1)


@pytest.mark.slow
def test_command_split_across_writes():
    device = open_board(f'board=telemetry&{FAST}')
    try:
        read_reports(device, 1)
        for piece in (b'we', b'ather,', b'of', b'f\n'):
            device.write(piece)
            time.sleep(0.02)
        report = read_reports(device, 2)[-1]
    finally:
        device.close()
    assert report['power']['weather'] == 0


@pytest.mark.slow
def test_first_report_is_cut_like_a_running_board():
    device = open_board(f'board=telemetry&{FAST}')
    try:
        first = device.readline().decode()
        whole = device.readline().decode()
    finally:
        device.close()
    assert first.endswith('\r\n')
    assert whole.startswith('{"name":"telemetry_board"')
    # The cut line is the tail of a report shaped like the whole one.
    assert len(first) <= len(whole) + 5


@pytest.mark.slow
def test_wrong_settings_keep_the_board_silent_until_fixed():
    device = open_board(f'board=telemetry&{FAST}', baudrate=115200, timeout=0.6)
    try:
        assert device.read(10) == b''
        device.baudrate = 9600
        assert read_reports(device, 1)[0]['name'] == 'telemetry_board'
    finally:
        device.close()


def test_buffer_properties_and_resets():
    device = open_board(f'board=telemetry&{FAST}&chunk_size=7&name=left-board')
    try:
        assert device.name == 'left-board'
        deadline = time.monotonic() + 5
        while device.in_waiting < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert device.in_waiting >= 7
        device.reset_input_buffer()
        assert device.in_waiting < 7
        assert device.out_waiting == 0
        device.write(b'fan,on\n')
        device.flush()
        assert device.out_waiting == 0
        device.reset_output_buffer()
    finally:
        device.close()
    with pytest.raises(serialutil.PortNotOpenError):
        device.read()
    with pytest.raises(serialutil.PortNotOpenError):
        device.out_waiting


def test_chunks_are_at_most_chunk_size():
    device = open_board(f'board=telemetry&{FAST}&chunk_size=5')
    try:
        board = device._board
        chunks = [board.read_chunk(timeout=3) for _ in range(20)]
    finally:
        device.close()
    assert all(0 < len(chunk) <= 5 for chunk in chunks)


@pytest.mark.parametrize('query', ['board=weather', 'colour=red', 'chunk_size=0',
                                   'chunk_size=x', 'report_interval=-1', 'board=a&board=b'])
def test_bad_urls_fail_to_open(query):
    with pytest.raises(serialutil.SerialException):
        open_board(query)


@pytest.mark.slow
def test_stop_on_close_leaves_no_thread():
    before = set(threading.enumerate())
    device = open_board(f'board=telemetry&{FAST}')
    read_reports(device, 1)
    started = set(threading.enumerate()) - before
    device.close()
    assert started and not any(thread.is_alive() for thread in started)


def test_board_message_copies():
    one = board_message('telemetry')
    one['power']['fan'] = 0
    assert board_message('telemetry')['power']['fan'] == 1


def test_simulator_run_directly():
    relay_queue, json_queue, stop = queue.Queue(), queue.Queue(), threading.Event()
    simulator = ArduinoSimulator({'name': 'x'}, relay_queue, json_queue, 8, stop,
                                 report_interval=0.1)
    thread = threading.Thread(target=simulator.run)
    thread.start()
    try:
        data = bytearray()
        deadline = time.monotonic() + 5
        while data.count(b'\n') < 2 and time.monotonic() < deadline:
            chunk = json_queue.get(timeout=1)
            assert len(chunk) <= 8
            data.extend(chunk)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    lines = [json.loads(line) for line in data.split(b'\r\n')[:2]]
    assert [line['report_num'] for line in lines] == [1, 2]
    assert lines[0]['name'] == 'x'
    with pytest.raises(ValueError):
        ArduinoSimulator({}, relay_queue, json_queue, 0, stop)


def test_full_output_queue_drops_chunks_instead_of_blocking():
    with SimulatedBoard('telemetry', chunk_size=50, report_interval=0.05,
                        baudrate=960000, read_buffer_size=2) as board:
        deadline = time.monotonic() + 5
        while board.simulator.dropped_chunks == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board.simulator.dropped_chunks > 0
        assert board.running


@pytest.mark.slow
def test_simulated_board_commands_from_a_stream():
    read_end, write_end = os.pipe()
    with SimulatedBoard('telemetry', report_interval=0.2) as board, \
            open(read_end, 'rb') as stream:
        board.take_commands_from(stream)
        os.write(write_end, b'cameras,off')     # no line end: EOF ends the command
        os.close(write_end)
        lines = board.lines()
        reports = [json.loads(next(lines)) for _ in range(3)]
    assert reports[0]['power']['cameras'] == 1
    assert reports[-1]['power']['cameras'] == 0


# -- the pty board in process ---------------------------------------------------------------

def read_pty_lines(fd, count, deadline=10.0):
    pending = bytearray()
    end = time.monotonic() + deadline
    while pending.count(b'\n') < count:
        assert time.monotonic() < end
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            pending.extend(os.read(fd, 4096))
    return pending.decode().split('\r\n')[:count]


@pytest.mark.slow
def test_pty_board_round_trip(tmp_path):
    link = tmp_path / 'ttyTELEMETRY'
    with PtyBoard('telemetry', link=link, report_interval=0.25) as board:
        assert link.is_symlink() and os.readlink(link) == board.port
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            termios.tcflush(fd, termios.TCIFLUSH)
            os.write(fd, b'mount,off\n')
            lines = read_pty_lines(fd, 3)
            reports = [json.loads(line) for line in lines[1:]]
        finally:
            os.close(fd)
    assert reports[-1]['power']['mount'] == 0
    assert not link.exists() and not link.is_symlink()
    assert not os.path.exists(board.port)


def test_pty_board_link_replaces_symlinks_but_not_files(tmp_path):
    link = tmp_path / 'port'
    link.symlink_to('/dev/null')
    with PtyBoard('camera', link=link) as board:
        assert os.readlink(link) == board.port
    regular = tmp_path / 'file'
    regular.write_text('keep me')
    with pytest.raises(PanError) as info:
        PtyBoard('camera', link=regular).start()
    assert 'not a symbolic link' in str(info.value)
    assert regular.read_text() == 'keep me'


def test_pty_board_wait_counts_reports():
    with PtyBoard('json_object', report_interval=0.1) as board:
        started = time.monotonic()
        board.wait(count=3)
        assert board.reports_sent >= 3
        assert time.monotonic() - started < 5


def test_fake_handler_is_the_protocol_class():
    from panoptes_cli.serial_handlers import protocol_arduinosimulator

    assert protocol_arduinosimulator.Serial is FakeArduinoSerialHandler
    assert protocol_arduinosimulator.BOARDS == ('telemetry', 'camera', 'json_object')
