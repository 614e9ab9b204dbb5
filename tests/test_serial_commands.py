"""``panoptes serial ports|listen|simulate``: in process and as real processes on real ptys."""

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest
import serial

from panoptes_cli.serial_handlers import protocol_buffers as pb

FAST_URL = 'arduinosimulator://?board=telemetry&report_interval=0.5'


class Process:
    """A ``panoptes`` process whose stdout lines and stderr text are collected by threads."""

    def __init__(self, *args):
        executable = shutil.which('panoptes') or pytest.fail('panoptes is not installed')
        self.popen = subprocess.Popen([executable, *map(str, args)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr_parts = []
        self.pumps = [threading.Thread(target=self._pump_stdout, daemon=True),
                      threading.Thread(target=self._pump_stderr, daemon=True)]
        for pump in self.pumps:
            pump.start()

    def _pump_stdout(self):
        for line in self.popen.stdout:
            self.lines.put(line)

    def _pump_stderr(self):
        for line in self.popen.stderr:
            self.stderr_parts.append(line)

    @property
    def stderr(self) -> str:
        return ''.join(self.stderr_parts)

    def next_line(self, timeout=10.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f'no output in {timeout} s; stderr: {self.stderr}')

    def next_record(self, timeout=10.0) -> dict:
        return json.loads(self.next_line(timeout))

    def wait_for_stderr(self, text, timeout=15.0):
        end = time.monotonic() + timeout
        while text not in self.stderr:
            assert time.monotonic() < end, f'{text!r} not on stderr: {self.stderr!r}'
            time.sleep(0.05)

    def signal(self, signum, timeout=10.0) -> int:
        """Send a signal, wait for the exit and for the last of its output; return the status."""
        self.popen.send_signal(signum)
        status = self.popen.wait(timeout=timeout)
        for pump in self.pumps:
            pump.join(timeout=5)
        return status

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


@pytest.fixture
def processes():
    """Start processes with ``start(*args)``; all of them are killed at the end."""
    started = []

    def start(*args):
        process = Process(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# -- help -----------------------------------------------------------------------------------

@pytest.mark.parametrize('command', ['ports', 'listen', 'simulate'])
def test_help_has_examples(cli, command):
    result = cli('serial', command, '--help')
    assert result.exit_code == 0
    assert 'Examples:' in result.stdout
    assert f'panoptes serial {command}' in result.stdout


# -- ports ----------------------------------------------------------------------------------

def test_ports_json_in_a_pipe(cli):
    result = cli('serial', 'ports', '--links')
    assert result.exit_code == 0, result.stderr
    ports = json.loads(result.stdout)
    assert isinstance(ports, list)
    for port in ports:
        assert {'device', 'description', 'hwid', 'vid', 'pid', 'serial_number'} <= set(port)


@pytest.mark.slow
def test_ports_table_only_on_a_terminal():
    main, terminal = os.openpty()
    try:
        process = subprocess.run([shutil.which('panoptes'), 'serial', 'ports'], stdout=terminal,
                                 stderr=subprocess.PIPE, text=True, timeout=30)
        os.close(terminal)
        terminal = None
        shown = b''
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        if terminal is not None:
            os.close(terminal)
        os.close(main)
    assert process.returncode == 0
    text = shown.decode(errors='replace')
    assert not text.lstrip().startswith('[')
    assert 'Device' in text or 'No serial ports found' in process.stderr


# -- listen in process ----------------------------------------------------------------------

@pytest.mark.slow
def test_listen_to_the_simulator(cli):
    result = cli('serial', 'listen', FAST_URL, '--limit', 2)
    assert result.exit_code == 0, result.stderr
    first, second = records(result.stdout)
    assert set(first) == {'timestamp', 'port', 'data'}
    assert first['port'] == FAST_URL
    assert first['data']['name'] == 'telemetry_board'
    assert second['data']['report_num'] == first['data']['report_num'] + 1
    assert first['timestamp'] < second['timestamp']


def test_listen_raw(cli):
    pb.ResetBuffers(b'{"a": 1}\r\nnoise\r\n')
    result = cli('serial', 'listen', 'buffers://', '--raw', '-n', 2)
    assert result.exit_code == 0, result.stderr
    assert [record['line'] for record in records(result.stdout)] == ['{"a": 1}', 'noise']
    assert result.stderr == ''


def test_listen_skips_garbled_lines_with_a_warning(cli):
    pb.ResetBuffers(b'tail of a report"}\r\n{"n": 1}\r\n\xff\xfegarbage\r\n{"n": 2, "t"\r\n'
                    b'[1, 2]\r\n{"n": 3}\r\n')
    result = cli('serial', 'listen', 'buffers://', '-n', 2, '--timeout', 2)
    assert result.exit_code == 0, result.stderr
    assert [record['data']['n'] for record in records(result.stdout)] == [1, 3]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3
    assert all(line.startswith('Warning: buffers://: skipped a line: ') for line in warnings)
    assert 'xfegarbage' in warnings[0]
    assert 'not a JSON object' in warnings[2]
    assert 'tail of a report' not in result.stderr


@pytest.mark.slow
def test_listen_timeout_exits_1(cli):
    result = cli('serial', 'listen', 'no_op://', '--timeout', 0.5)
    assert result.exit_code == 1
    assert result.stdout == ''
    assert result.stderr.strip() == ('Error: no_op://: no data for 0.5 s; is the device on and '
                                     'sending at 9600 baud?')


def test_listen_missing_port_exits_1(cli, tmp_path):
    result = cli('serial', 'listen', tmp_path / 'ttyNONE')
    assert result.exit_code == 1
    assert result.stderr.startswith(f'Error: cannot open {tmp_path / "ttyNONE"}: ')
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('args', [['--baudrate', 0], ['--limit', 0], ['--timeout', 0]])
def test_listen_bad_options_exit_2(cli, args):
    assert cli('serial', 'listen', 'no_op://', *args).exit_code == 2


def test_listen_bad_url_exits_1(cli):
    result = cli('serial', 'listen', 'arduinosimulator://?board=dome')
    assert result.exit_code == 1
    assert "unknown board 'dome'" in result.stderr


# -- simulate in process --------------------------------------------------------------------

@pytest.mark.slow
def test_simulate_on_stdout_takes_commands_on_stdin(cli):
    result = cli('serial', 'simulate', '--limit', 2, input='fan,off\n')
    assert result.exit_code == 0, result.stderr
    first, second = records(result.stdout)
    assert (first['report_num'], second['report_num']) == (1, 2)
    assert first['power']['fan'] == 1 and second['power']['fan'] == 0
    assert second['current']['fan'] == 0


def test_simulate_camera_board(cli):
    result = cli('serial', 'simulate', '--board', 'camera', '-n', 1)
    assert result.exit_code == 0
    (report,) = records(result.stdout)
    assert report['name'] == 'camera_board' and report['report_num'] == 1


def test_simulate_link_needs_pty(cli, tmp_path):
    result = cli('serial', 'simulate', '--link', tmp_path / 'tty')
    assert result.exit_code == 2
    assert '--link needs --pty' in result.stderr


def test_simulate_unknown_board_exits_2(cli):
    assert cli('serial', 'simulate', '--board', 'dome').exit_code == 2


def test_simulate_refuses_to_replace_a_file(cli, tmp_path):
    precious = tmp_path / 'notes.txt'
    precious.write_text('keep')
    result = cli('serial', 'simulate', '--pty', '--link', precious)
    assert result.exit_code == 1
    assert 'is not a symbolic link' in result.stderr
    assert precious.read_text() == 'keep'


# -- real processes on real ptys ------------------------------------------------------------

@pytest.mark.slow
def test_pty_round_trip_between_processes(processes, run_panoptes):
    simulator = processes('serial', 'simulate', '--pty')
    announced = simulator.next_record()
    assert announced['port'].startswith('/dev/pts/')
    assert announced['board'] == 'telemetry' and announced['baudrate'] == 9600
    assert 'fan' in announced['relays']
    listened = run_panoptes('serial', 'listen', announced['port'], '--limit', 2, timeout=30)
    assert listened.returncode == 0, listened.stderr
    first, second = records(listened.stdout)
    assert first['port'] == announced['port']
    assert first['data']['name'] == 'telemetry_board'
    assert second['data']['report_num'] == first['data']['report_num'] + 1
    assert simulator.signal(signal.SIGINT) == 130
    assert 'Traceback' not in simulator.stderr
    assert not os.path.exists(announced['port'])


@pytest.mark.slow
def test_relay_commands_through_the_pty(processes):
    simulator = processes('serial', 'simulate', '--pty')
    port = simulator.next_record()['port']
    device = serial.Serial(port, 9600, timeout=5)
    try:
        device.write(b'mount,off\n')
        device.write(b'4,0\n')      # weather, by index
        reports = []
        for _ in range(8):
            try:
                reports.append(json.loads(device.readline()))
            except ValueError:
                continue       # the tail of a report sent before we opened the port
            if reports[-1]['power']['mount'] == 0:
                break
    finally:
        device.close()
    assert reports[-1]['power']['mount'] == 0 and reports[-1]['power']['weather'] == 0
    assert reports[-1]['current']['mount'] == 0
    assert len(reports) <= 2


@pytest.mark.slow
def test_simulate_pty_count_then_exit(processes):
    simulator = processes('serial', 'simulate', '--pty', '--board', 'json_object', '-n', 1)
    assert simulator.next_record()['relays'] == []
    assert simulator.popen.wait(timeout=15) == 0


@pytest.mark.slow
def test_device_vanishes_and_comes_back(processes, tmp_path):
    link = tmp_path / 'ttyTELEMETRY'
    first_board = processes('serial', 'simulate', '--pty', '--link', link)
    assert first_board.next_record()['link'] == str(link)
    listener = processes('serial', 'listen', link)
    before = listener.next_record()
    assert before['data']['name'] == 'telemetry_board'

    # Unplugged: the board's process ends, its pty and the link disappear.
    assert first_board.signal(signal.SIGTERM) == 143
    assert not link.is_symlink()
    listener.wait_for_stderr(f'Warning: {link}: reading from {link} failed')
    listener.wait_for_stderr('reconnecting in 0.5 s')
    assert listener.popen.poll() is None

    # Plugged in again: a new board (report_num starts again) behind the same link.
    second_board = processes('serial', 'simulate', '--pty', '--link', link)
    second_port = second_board.next_record()['port']
    listener.wait_for_stderr(f'{link}: reconnected')
    after = listener.next_record(timeout=15)
    assert after['data']['report_num'] <= 3
    assert os.readlink(link) == second_port

    # Ctrl-C: status 130, no traceback.
    assert listener.signal(signal.SIGINT) == 130
    assert 'Traceback' not in listener.stderr
    assert second_board.signal(signal.SIGINT) == 130
    assert not link.is_symlink()


@pytest.mark.slow
def test_listen_quiet_when_the_reader_goes_away():
    """As in ``panoptes serial listen PORT | head -1``."""
    listener = subprocess.Popen([shutil.which('panoptes'), 'serial', 'listen', FAST_URL],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(listener.stdout.readline())['data']['name'] == 'telemetry_board'
        listener.stdout.close()
        assert listener.wait(timeout=15) == 0
        assert listener.stderr.read() == b''
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(timeout=10)
        listener.stderr.close()
