"""SerialData, port listing and listen(): against buffers://, the simulator and real ptys."""

import contextlib
import errno
import json
import os
import threading
import time
import tty
from datetime import datetime

import pytest
import serial

from panoptes_cli import rs232
from panoptes_cli.error import BadSerialConnection, Timeout
from panoptes_cli.rs232 import (
    Disconnected, Reading, Reconnected, SerialData, SkippedLine, get_serial_port_info, listen)
from panoptes_cli.serial_handlers import protocol_buffers as pb


@pytest.fixture(autouse=True)
def empty_buffers():
    pb.ResetBuffers()


class PtyDevice:
    """A serial device played by the test: bytes written to ``master`` appear at ``port``.

    ``link`` is a stable symbolic link to the current pty, as udev gives real
    boards; :meth:`vanish` closes the pty (the device node disappears) and
    :meth:`come_back` opens a new one behind the same link.
    """

    def __init__(self, link):
        self.link = str(link)
        self.master = None
        self.port = None
        self.come_back()

    def come_back(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)
        self.master = master
        temporary = self.link + '.tmp'
        os.symlink(self.port, temporary)
        os.replace(temporary, self.link)

    def send(self, data: bytes):
        os.write(self.master, data)

    def vanish(self):
        os.unlink(self.link)
        os.close(self.master)
        self.master = None

    def close(self):
        if self.master is not None:
            self.vanish()


@pytest.fixture
def device(tmp_path):
    pty_device = PtyDevice(tmp_path / 'ttyDEVICE')
    yield pty_device
    pty_device.close()


class Collector:
    """Run listen() in a thread and collect its events; the generator is closed at the end."""

    def __init__(self, *args, **kwargs):
        self.events = []
        self.error = None
        self._stop = threading.Event()
        self._generator = listen(*args, stop=self._stop, **kwargs)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for event in self._generator:
                self.events.append(event)
        except Exception as err:  # noqa: BLE001 - handed to the test
            self.error = err

    def wait_for(self, predicate, deadline=10.0):
        end = time.monotonic() + deadline
        while not predicate(self.events):
            assert self._thread.is_alive() or predicate(self.events), \
                f'listen stopped: {self.error!r}; events: {self.events}'
            assert time.monotonic() < end, f'timed out; events: {self.events}'
            time.sleep(0.02)

    def readings(self):
        return [event for event in self.events if isinstance(event, Reading) and event.data != SYNC]

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), 'listen did not stop'


@contextlib.contextmanager
def collecting(*args, **kwargs):
    collector = Collector(*args, **kwargs)
    try:
        yield collector
    finally:
        collector.stop()


SYNC = {'sync': True}


def sync(collector, device, deadline=10.0):
    """Send sync lines until the listener reports one, then forget the events so far.

    Seeing the pty opened is not enough: PySerial discards pending input just
    after opening, so data sent at that moment could be lost.
    """
    end = time.monotonic() + deadline
    while not any(isinstance(e, Reading) and e.data == SYNC for e in collector.events):
        assert time.monotonic() < end, f'listener never synced: {collector.events}'
        try:
            device.send(b'{"sync": true}\n')
        except OSError:
            pass
        time.sleep(0.05)
    time.sleep(0.1)
    collector.events.clear()


# -- SerialData ---------------------------------------------------------------------------

def test_serial_data_needs_a_port():
    with pytest.raises(ValueError):
        SerialData()


def test_invalid_settings_raise_value_error():
    with pytest.raises(ValueError):
        SerialData('no_op://', baudrate=-1)
    with pytest.raises(ValueError):
        SerialData('nosuchprotocol://x')


def test_missing_device_is_not_connected(tmp_path):
    missing = str(tmp_path / 'ttyNONE')
    data = SerialData(missing, name='weather')
    assert not data.is_connected
    assert data.port == missing and data.name == 'weather'
    with pytest.raises(BadSerialConnection, match='cannot open weather'):
        data.connect()
    for call in (data.read, lambda: data.read_bytes(1), lambda: data.write('x'),
                 lambda: data.write_bytes(b'x'), data.read_available):
        with pytest.raises(BadSerialConnection, match='not connected'):
            call()


def test_connect_disconnect_cycle():
    data = SerialData('no_op://')
    assert data.is_connected
    data.connect()             # already open: nothing happens
    data.disconnect()
    assert not data.is_connected
    data.disconnect()          # closing twice is fine
    data.connect()
    assert data.is_connected


def test_read_retries_then_gives_up():
    data = SerialData('buffers://', retry_limit=3, retry_delay=0.01)
    started = time.monotonic()
    assert data.read() == ''
    assert time.monotonic() - started < 1
    pb.SetRBufferValue(b'late line\n')
    assert data.read(retry_limit=1) == 'late line\n'


def test_read_survives_bytes_that_are_not_ascii():
    pb.SetRBufferValue(b'temp \xb0C\n')
    assert SerialData('buffers://').read() == 'temp \\xb0C\n'


def test_bytes_and_input_buffer():
    pb.SetRBufferValue(b'0123456789')
    data = SerialData('buffers://')
    assert data.read_bytes(4) == b'0123'
    data.reset_input_buffer()
    assert data.read_bytes(4) == b''
    assert data.write_bytes(b'\x00\x01') == 2
    assert pb.GetWBufferValue() == b'\x00\x01'


def test_get_reading_has_an_iso_utc_timestamp(monkeypatch):
    pb.SetRBufferValue(b'hello\n')
    before = datetime.utcnow().replace(microsecond=0)
    when, line = SerialData('buffers://').get_reading()
    assert line == 'hello\n'
    assert before <= datetime.fromisoformat(when) <= datetime.utcnow()
    monkeypatch.setenv('POCSTIME', '2021-06-01 03:04:05')
    pb.SetRBufferValue(b'again\n')
    assert SerialData('buffers://').get_reading() == ('2021-06-01T03:04:05.000', 'again\n')


def test_get_and_parse_reading_skips_garbage():
    pb.SetRBufferValue(b'\x8f\x00garbage\n\n{"half": \n{"humidity": 42.6, "ok": true}\n')
    when, value = SerialData('buffers://').get_and_parse_reading()
    assert value == {'humidity': 42.6, 'ok': True}
    pb.SetRBufferValue(b'not json\n' * 3)
    assert SerialData('buffers://', retry_limit=1).get_and_parse_reading(retry_limit=3) is None


@pytest.mark.slow
def test_serial_data_with_the_simulator():
    data = SerialData('arduinosimulator://?board=camera&report_interval=0.5', baudrate=9600)
    try:
        reading = None
        for _ in range(4):
            reading = data.get_and_parse_reading()
            if reading and 'name' in reading[1]:
                break
        assert reading[1]['name'] == 'camera_board'
    finally:
        data.disconnect()


# -- ports --------------------------------------------------------------------------------

def test_get_serial_port_info_is_sorted():
    ports = get_serial_port_info()
    devices = [info.device for info in ports]
    assert devices == sorted(devices)
    assert all(hasattr(info, 'hwid') for info in ports)
    assert rs232.list_serial_ports() == [rs232.port_info_record(info) for info in ports]


def test_port_records_of_a_usb_board(monkeypatch):
    from serial.tools.list_ports_common import ListPortInfo

    board = ListPortInfo('/dev/ttyACM0', skip_link_detection=True)
    board.vid, board.pid, board.serial_number = 0x2341, 0x0043, '75533353038351F0C1E1'
    board.manufacturer, board.product = 'Arduino (www.arduino.cc)', 'Arduino Uno'
    board.apply_usb_info()
    plain = ListPortInfo('/dev/ttyS0', skip_link_detection=True)
    monkeypatch.setattr(rs232, 'comports', lambda include_links: [plain, board])
    first, second = rs232.list_serial_ports()
    assert first['device'] == '/dev/ttyACM0'
    assert (first['vid'], first['pid']) == ('2341', '0043')
    assert first['serial_number'] == '75533353038351F0C1E1'
    assert 'VID:PID=2341:0043' in first['hwid']
    assert first['description'] == 'Arduino Uno'
    assert second['vid'] is None and second['device'] == '/dev/ttyS0'
    json.dumps([first, second])


# -- listen() -----------------------------------------------------------------------------

def test_listen_fails_at_once_for_a_missing_port(tmp_path):
    with pytest.raises(BadSerialConnection, match='cannot open'):
        next(listen(str(tmp_path / 'ttyNONE')))


def test_listen_times_out_on_a_silent_device():
    started = time.monotonic()
    with pytest.raises(Timeout, match='no data for 0.3 s'):
        next(listen('no_op://', timeout=0.3, poll_interval=0.1))
    assert time.monotonic() - started < 3


def test_listen_raw_keeps_every_line():
    pb.SetRBufferValue(b'partial"}\r\n\r\n{"a": 1}\r\nnot json \xff\r\n')
    events = listen('buffers://', parse=False, timeout=0.2)
    lines = [next(events).line for _ in range(3)]
    events.close()
    assert lines == ['partial"}', '{"a": 1}', 'not json \\xff']


def test_listen_assembles_fragments_and_reports_garbage(device):
    with collecting(device.link, timeout=20, poll_interval=0.1) as collector:
        sync(collector, device)
        # One report dribbled out a few bytes at a time.
        report = b'{"name":"telemetry_board","humidity":42.5,"temperature":[13.0,12.8]}\r\n'
        for start in range(0, len(report), 7):
            device.send(report[start:start + 7])
            time.sleep(0.005)
        device.send(b'\x00\xfe\xff}{garbled\r\n')          # line noise
        device.send(b'{"name":"te')                         # half a line ...
        time.sleep(0.05)
        device.send(b'lemetry_board","report_num":2}\n')    # ... and the rest, LF only
        device.send(b'42\r\n')                              # JSON, but not an object
        device.send(b'{"report_num":3}\r\n')
        collector.wait_for(lambda events: len(collector.readings()) >= 3)
    kinds = [type(event).__name__ for event in collector.events]
    assert kinds == ['Reading', 'SkippedLine', 'Reading', 'SkippedLine', 'Reading']
    readings = collector.readings()
    assert readings[0].data == {'name': 'telemetry_board', 'humidity': 42.5,
                                'temperature': [13.0, 12.8]}
    assert readings[1].data == {'name': 'telemetry_board', 'report_num': 2}
    assert readings[2].data == {'report_num': 3}
    assert all(reading.port == device.link for reading in readings)
    datetime.fromisoformat(readings[0].timestamp)
    skipped = [event for event in collector.events if isinstance(event, SkippedLine)]
    assert skipped[0].reason.startswith('not JSON') and 'garbled' in skipped[0].line
    assert skipped[1].reason == 'not a JSON object (a int)'
    assert readings[0].record() == {'timestamp': readings[0].timestamp, 'port': device.link,
                                    'data': readings[0].data}
    assert set(readings[0].record(raw=True)) == {'timestamp', 'port', 'line'}


def test_listen_reports_an_endless_line(device, monkeypatch):
    monkeypatch.setattr(rs232, 'MAX_LINE_LENGTH', 1000)
    with collecting(device.link, timeout=20, poll_interval=0.1) as collector:
        sync(collector, device)
        for _ in range(12):
            device.send(b'x' * 100)
            time.sleep(0.005)
        device.send(b'\n{"after": 2}\n')
        collector.wait_for(lambda events: any(
            isinstance(e, Reading) and e.data == {'after': 2} for e in events))
    skipped = [event for event in collector.events if isinstance(event, SkippedLine)]
    assert any('without a line end' in event.reason for event in skipped)


@pytest.mark.slow
def test_listen_survives_a_device_that_vanishes_and_comes_back(device):
    with collecting(device.link, timeout=30, poll_interval=0.1, retry_delay=0.1,
                    max_retry_delay=0.4) as collector:
        sync(collector, device)
        device.send(b'{"n": 1}\n{"n": 2}\n')
        collector.wait_for(lambda events: len(events) >= 2)
        device.vanish()
        collector.wait_for(lambda events: sum(isinstance(e, Disconnected) for e in events) >= 3)
        device.come_back()
        collector.wait_for(lambda events: any(isinstance(e, Reconnected) for e in events))
        events_so_far = list(collector.events)
        sync(collector, device)
        device.send(b'{"n": 3}\n')
        collector.wait_for(lambda events: len(collector.readings()) >= 1)
        readings = [e for e in events_so_far if isinstance(e, Reading)] + collector.readings()
        collector.events[:0] = events_so_far
    assert [reading.data['n'] for reading in readings] == [1, 2, 3]
    lost = [event for event in collector.events if isinstance(event, Disconnected)]
    assert lost[0].reason.startswith('reading from')
    assert 'cannot open' in lost[1].reason
    assert [event.retry_in for event in lost[:4]] == [0.1, 0.2, 0.4, 0.4][:len(lost[:4])]
    kinds = [type(event).__name__ for event in collector.events]
    assert kinds.index('Reconnected') > kinds.index('Disconnected')


@pytest.mark.slow
def test_listen_timeout_covers_reconnecting(device):
    with collecting(device.link, timeout=0.8, poll_interval=0.1, retry_delay=0.1) as collector:
        sync(collector, device)
        device.vanish()
        collector.wait_for(lambda events: collector.error is not None, deadline=10)
    assert isinstance(collector.error, Timeout)


def test_listen_closes_the_port_when_closed(device):
    events = listen(device.link, timeout=10, poll_interval=0.1)
    first = []
    reader = threading.Thread(target=lambda: first.append(next(events)))
    reader.start()
    end = time.monotonic() + 10
    while reader.is_alive() and time.monotonic() < end:
        with contextlib.suppress(OSError):
            device.send(b'{"n": 1}\n')
        time.sleep(0.05)
    reader.join(timeout=1)
    assert first[0].data == {'n': 1}
    events.close()
    # With the only reader gone, the pty master reads EIO again.
    with pytest.raises(OSError) as info:
        os.read(device.master, 1)
    assert info.value.errno == errno.EIO


@pytest.mark.slow
def test_listen_to_the_simulator_url():
    events = listen('arduinosimulator://?board=telemetry&report_interval=0.5', timeout=10)
    try:
        reading = next(events)
    finally:
        events.close()
    assert reading.data['name'] == 'telemetry_board'
    assert reading.port.startswith('arduinosimulator://')


def test_serial_exception_classes_are_wrapped():
    assert issubclass(BadSerialConnection, Exception)
    assert not issubclass(BadSerialConnection, serial.SerialException)
