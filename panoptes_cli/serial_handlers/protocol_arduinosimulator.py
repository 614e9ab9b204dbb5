"""Simulated PANOPTES Arduino boards (telemetry_board.ino, camera_board.ino).

A simulated board behaves like the real sketches: every 2 seconds it sends a
one-line JSON report ending in ``\\r\\n``, in small chunks at 9600 baud (8N1,
so 960 bytes a second), with ``millis`` (milliseconds since start) and
``report_num`` added. It reads relay commands and acts on them, so the next
report shows the change.

Relay commands are lines ``RELAY,ACTION``: RELAY is a relay's name or its
index (0-based, in report order), ACTION is ``1``/``on``, ``0``/``off`` or
``toggle``. Unknown relays and actions are logged and ignored, as the board
would. The relays are:

- telemetry board: ``computer``, ``fan``, ``mount``, ``cameras``, ``weather``,
  ``main`` (the ``power`` field). A load that is off draws no current, so its
  ``current`` and ``amps`` read 0; with ``main`` off nothing draws current.
- camera board: ``camera_00``, ``camera_01`` (the fields of those names).
- ``json_object`` board: none; it reports only ``millis`` and ``report_num``.

Three ways to use one:

- ``serial.serial_for_url('arduinosimulator://?board=telemetry')`` (at 9600
  baud, 8N1): the :class:`FakeArduinoSerialHandler`. As when connecting to a
  running board, the first report arrives with its start cut off. URL
  parameters: ``board``, ``name`` (sets the device's ``name``), ``chunk_size``
  (bytes per chunk, default 20), ``report_interval`` (seconds, default 2),
  ``read_buffer_size``, ``write_buffer_size`` (queue lengths, in chunks).
- :class:`SimulatedBoard`: the board in a thread, read and written in process.
- :class:`PtyBoard`: the board behind a pseudo-terminal, so any serial program
  can open it as a device (``panoptes serial simulate --pty``).

>>> import serial
>>> import panoptes_cli.serial_handlers
>>> url = 'arduinosimulator://?board=telemetry&report_interval=1'
>>> board = serial.serial_for_url(url, baudrate=9600, timeout=5)
>>> _ = board.readline()                  # most likely a partial report
>>> report = json.loads(board.readline())
>>> report['name'], report['power']['fan'], report['report_num']
('telemetry_board', 1, 2)
>>> board.write(b'fan,off\\n')
8
>>> report = json.loads(board.readline())
>>> report['power']['fan'], report['current']['fan'], report['amps']['fan']
(0, 0, 0.0)
>>> board.close()
"""

import copy
import errno
import json
import os
import queue
import random
import select
import threading
import time
import tty
import urllib.parse
from collections.abc import Iterator

from serial import serialutil

from panoptes_cli.error import PanError
from panoptes_cli.files import atomic_path
from panoptes_cli.logging import logger
from panoptes_cli.serial_handlers import NoOpSerial

BAUDRATE = 9600
# 8N1 framing: a start bit, 8 data bits and a stop bit for every byte.
BITS_PER_BYTE = 10
REPORT_INTERVAL = 2.0
DEFAULT_CHUNK_SIZE = 20
BOARDS = ('telemetry', 'camera', 'json_object')

_TELEMETRY_REPORT = {
    'name': 'telemetry_board',
    'ver': '2017-09-23',
    'power': {'computer': 1, 'fan': 1, 'mount': 1, 'cameras': 1, 'weather': 1, 'main': 1},
    'current': {'main': 387, 'fan': 28, 'mount': 34, 'cameras': 27},
    'amps': {'main': 1.94, 'fan': 0.14, 'mount': 0.17, 'cameras': 0.14},
    'humidity': 42.6,
    'temperature': [13.01, 12.81, 19.75],
    'temp_00': 15.5,
}
_CAMERA_REPORT = {
    'name': 'camera_board',
    'inputs': 6,
    'camera_00': 1,
    'camera_01': 1,
    'accelerometer': {'x': -7.02, 'y': 6.95, 'z': 1.7, 'o': 6},
    'humidity': 59.6,
    'temperature': [13.01, 12.81, 19.75],
    'temp_00': 12.5,
}
# Current sensor readings (ADC counts) of the loads when powered, and what
# the computer and weather station add to the main line's reading.
_NOMINAL_CURRENT = {'fan': 28, 'mount': 34, 'cameras': 27}
_OTHER_LOADS = {'computer': 230, 'weather': 68}
_AMPS_PER_COUNT = 0.005
_ON_WORDS = {'1': 1, 'on': 1, '0': 0, 'off': 0}


def board_message(board: str) -> dict:
    """Return a fresh copy of the report template of ``board``.

    >>> board_message('camera')['name']
    'camera_board'
    >>> board_message('json_object')
    {}
    >>> board_message('weather')
    Traceback (most recent call last):
      ...
    ValueError: unknown board 'weather': use one of telemetry, camera, json_object

    Raises:
        ValueError: If the board is not one of :data:`BOARDS`.
    """
    templates = {'telemetry': _TELEMETRY_REPORT, 'camera': _CAMERA_REPORT, 'json_object': {}}
    if board not in templates:
        raise ValueError(f'unknown board {board!r}: use one of {", ".join(BOARDS)}')
    return copy.deepcopy(templates[board])


class ArduinoSimulator:
    """Simulates the serial behavior of the PANOPTES Arduino sketches.

    The RS-232 connection is simulated with an input and output queue of
    bytes. :meth:`run` (called from a thread) generates a JSON report every
    ``report_interval`` seconds and sends its bytes to ``json_queue`` in
    chunks, paced to ``baudrate`` (8N1). Relay commands read from
    ``relay_queue`` change the board's state, which the following reports show.
    """

    def __init__(self, message: dict, relay_queue: queue.Queue, json_queue: queue.Queue,
                 chunk_size: int, stop: threading.Event, *, baudrate: int = BAUDRATE,
                 report_interval: float = REPORT_INTERVAL, cut_first_report: bool = False):
        """Create the simulator; nothing happens until :meth:`run`.

        Args:
            message: The message to be sent (millis and report_num will be added).
            relay_queue: The queue.Queue instance from which relay command
                bytes are read and acted upon. Elements are of type bytes.
            json_queue: The queue.Queue instance to which json messages
                (serialized to bytes) are written at ~9600 baud. Elements
                are of type bytes (i.e. each element is a sequence of bytes of
                length up to chunk_size).
            chunk_size: The number of bytes to write to json_queue at a time.
            stop: a threading.Event which is checked to see if run should stop executing.
            baudrate: The simulated line speed (8N1 framing).
            report_interval: Seconds between reports.
            cut_first_report: Drop a random number of leading bytes of the
                first report, as a host connecting to a running board sees.
        """
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be at least 1, got {chunk_size}')
        self.message = copy.deepcopy(message)
        self.relay_queue = relay_queue
        self.json_queue = json_queue
        self.chunk_size = int(chunk_size)
        self.stop = stop
        self.bytes_per_second = baudrate / BITS_PER_BYTE
        self.report_interval = report_interval
        self.cut_first_report = cut_first_report
        self.pending_json_bytes = bytearray()
        self.pending_relay_bytes = bytearray()
        self.report_num = 0
        self.start_time = None
        self.next_message_time = None
        self.next_chunk_time = None
        self.dropped_chunks = 0
        self._random = random.Random()
        self._relays = self._find_relays()

    def _find_relays(self) -> list[tuple[str, dict]]:
        """Return the relays as (name, the dict holding its 0/1 state), in report order."""
        if isinstance(self.message.get('power'), dict):
            power = self.message['power']
            return [(name, power) for name in power]
        return [(key, self.message) for key in self.message
                if key.startswith('camera_') and key[7:].isdigit()]

    @property
    def relays(self) -> dict[str, int]:
        """The relays' current states (1 on, 0 off) by name."""
        return {name: holder[name] for name, holder in self._relays}

    def run(self) -> None:
        """Produce messages periodically and emit their bytes at a limited rate."""
        now = time.monotonic()
        self.start_time = now
        first = self.generate_next_message_bytes(now)
        if self.cut_first_report:
            first = first[self._random.randrange(len(first)):]
        self.pending_json_bytes.extend(first)
        self.next_message_time = now + self.report_interval
        self.next_chunk_time = now
        while not self.stop.is_set():
            now = time.monotonic()
            if self.next_chunk_time is not None and now >= self.next_chunk_time:
                self.output_next_chunk(now)
            # Like the sketch, whose Serial.print blocks, a report is not
            # started before the previous one is out: no backlog builds up.
            if now >= self.next_message_time and not self.pending_json_bytes:
                self.generate_next_message(now)
            if self.pending_json_bytes:
                # A due report waits for this one to be out: only the next chunk wakes us.
                next_time = self.next_chunk_time
            elif self.next_chunk_time is not None:
                next_time = min(self.next_chunk_time, self.next_message_time)
            else:
                next_time = self.next_message_time
            self.read_relay_queue_until(next_time)

    def read_relay_queue_until(self, next_time: float) -> None:
        """Read and process relay queue bytes until time for the next action."""
        while not self.stop.is_set():
            # Wake up at least every 0.1 s so that a stop request is seen promptly.
            remaining = min(next_time - time.monotonic(), 0.1)
            if remaining <= 0:
                return
            try:
                data = self.relay_queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.pending_relay_bytes.extend(data)
            self.handle_pending_relay_bytes()

    def handle_pending_relay_bytes(self) -> None:
        """Process complete relay commands."""
        while (end := self.pending_relay_bytes.find(b'\n')) >= 0:
            line = self.pending_relay_bytes[:end].decode('ascii', errors='replace').strip()
            del self.pending_relay_bytes[:end + 1]
            if line:
                self.apply_command(line)
        # A real board's serial buffer is 64 bytes: a runaway line is thrown away.
        if len(self.pending_relay_bytes) > 64:
            logger.warning('Simulated board: discarding {} bytes without a line end',
                           len(self.pending_relay_bytes))
            self.pending_relay_bytes.clear()

    def apply_command(self, line: str) -> bool:
        """Act on one relay command line (``RELAY,ACTION``); return True if it was understood.

        >>> sim = ArduinoSimulator(board_message('telemetry'), queue.Queue(), queue.Queue(),
        ...                        20, threading.Event())
        >>> sim.apply_command('mount,off'), sim.apply_command('1,0'), sim.apply_command('5,toggle')
        (True, True, True)
        >>> sim.relays
        {'computer': 1, 'fan': 0, 'mount': 0, 'cameras': 1, 'weather': 1, 'main': 0}
        >>> sim.apply_command('dome,on'), sim.apply_command('fan')
        (False, False)
        """
        relay, _, action = (part.strip().lower() for part in line.partition(','))
        names = [name for name, _ in self._relays]
        if relay.isdigit() and int(relay) < len(names):
            relay = names[int(relay)]
        if relay not in names or (action not in _ON_WORDS and action != 'toggle'):
            logger.warning('Simulated board: ignoring command {!r} (relays: {}; actions: 1/on, '
                           '0/off, toggle)', line, ', '.join(names) or 'none')
            return False
        holder = dict(self._relays)[relay]
        holder[relay] = 1 - holder[relay] if action == 'toggle' else _ON_WORDS[action]
        logger.info('Simulated board: relay {} is now {}', relay, 'on' if holder[relay] else 'off')
        return True

    def output_next_chunk(self, now: float) -> None:
        """Output one chunk of pending json bytes.

        The next chunk is scheduled after the time this one takes on the wire,
        counted from this chunk's scheduled time (not from ``now``), so that
        scheduling delays do not add up and the rate stays at the baud rate.
        """
        if not self.pending_json_bytes:
            self.next_chunk_time = None
            return
        chunk = bytes(self.pending_json_bytes[:self.chunk_size])
        del self.pending_json_bytes[:len(chunk)]
        wire_time = len(chunk) / self.bytes_per_second
        # After a long stall (a suspended process), restart the pacing from now.
        start = self.next_chunk_time if now - self.next_chunk_time < wire_time else now
        self.next_chunk_time = start + wire_time
        try:
            self.json_queue.put_nowait(chunk)
        except queue.Full:
            # Nobody reads: like a real board, keep transmitting into the void.
            self.dropped_chunks += 1

    def generate_next_message(self, now: float) -> None:
        """Append the next message to the pending bytearray and schedule the next message."""
        self.pending_json_bytes.extend(self.generate_next_message_bytes(now))
        self.next_message_time += self.report_interval
        if self.next_message_time <= now:
            self.next_message_time = now + self.report_interval
        if self.next_chunk_time is None:
            self.next_chunk_time = now

    def generate_next_message_bytes(self, now: float) -> bytes:
        """Generate the next message (report) from the simulated Arduino."""
        self.report_num += 1
        self._update_readings()
        self.message['millis'] = int((now - self.start_time) * 1000)
        self.message['report_num'] = self.report_num
        return (json.dumps(self.message, separators=(',', ':')) + '\r\n').encode('ascii')

    def _update_readings(self) -> None:
        """Let the sensors drift a little and the currents follow the relays."""
        message = self.message
        jitter = self._random.uniform
        if isinstance(message.get('humidity'), float):
            message['humidity'] = round(min(99.0, max(5.0, message['humidity'] + jitter(-0.3, 0.3))), 2)
        if isinstance(message.get('temperature'), list):
            message['temperature'] = [round(t + jitter(-0.05, 0.05), 2) for t in message['temperature']]
        if isinstance(message.get('temp_00'), float):
            message['temp_00'] = round(message['temp_00'] + jitter(-0.05, 0.05), 2)
        power = message.get('power')
        if isinstance(power, dict) and isinstance(message.get('current'), dict):
            mains = power.get('main', 1)
            current = {name: round(counts * (1 + jitter(-0.05, 0.05))) if power.get(name) and mains else 0
                       for name, counts in _NOMINAL_CURRENT.items()}
            others = sum(counts for name, counts in _OTHER_LOADS.items() if power.get(name))
            current = {'main': sum(current.values()) + others if mains else 0, **current}
            message['current'] = current
            message['amps'] = {name: round(counts * _AMPS_PER_COUNT, 2) for name, counts in current.items()}


def _drain(q: queue.Queue) -> list:
    """Take every item the queue holds now, without waiting; return them in order."""
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


class SimulatedBoard:
    """A simulated board running in a thread, read and written through byte queues.

    >>> with SimulatedBoard('camera', report_interval=0.2) as board:
    ...     _ = board.write(b'camera_01,off\\n')
    ...     reports = [json.loads(line) for _, line in zip(range(2), board.lines())]
    >>> [(r['report_num'], r['camera_00'], r['camera_01']) for r in reports]
    [(1, 1, 1), (2, 1, 0)]

    Args:
        board: ``telemetry``, ``camera`` or ``json_object``.
        chunk_size: Bytes sent at a time.
        baudrate: Simulated line speed.
        report_interval: Seconds between reports.
        cut_first_report: Cut the start off the first report.
        read_buffer_size: Chunks the output queue holds before chunks are dropped.
        write_buffer_size: Writes the command queue holds before writes time out.
    """

    def __init__(self, board: str = 'telemetry', chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                 baudrate: int = BAUDRATE, report_interval: float = REPORT_INTERVAL,
                 cut_first_report: bool = False, read_buffer_size: int = 10000,
                 write_buffer_size: int = 100):
        self.board = board
        self.json_queue = queue.Queue(maxsize=read_buffer_size)
        self.relay_queue = queue.Queue(maxsize=write_buffer_size)
        self.stop_event = threading.Event()
        self.simulator = ArduinoSimulator(
            board_message(board), self.relay_queue, self.json_queue, chunk_size, self.stop_event,
            baudrate=baudrate, report_interval=report_interval, cut_first_report=cut_first_report)
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the board's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> 'SimulatedBoard':
        """Start the board's thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.simulator.run, daemon=True,
                                            name=f'simulated {self.board} board')
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the board's thread and wait for it."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> 'SimulatedBoard':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Send bytes (relay commands) to the board; return how many.

        Raises:
            queue.Full: If the board does not take them within ``timeout`` seconds.
        """
        data = bytes(data)
        if data:
            self.relay_queue.put(data, timeout=timeout)
        return len(data)

    def read_chunk(self, timeout: float | None = None) -> bytes:
        """Return the next chunk the board sends, or ``b''`` after ``timeout`` seconds."""
        try:
            return self.json_queue.get(timeout=timeout)
        except queue.Empty:
            return b''

    def lines(self) -> Iterator[str]:
        """Yield the board's report lines (without line ends) as they complete."""
        pending = bytearray()
        while not self.stop_event.is_set():
            chunk = self.read_chunk(timeout=0.2)
            pending.extend(chunk)
            while (end := pending.find(b'\n')) >= 0:
                line = pending[:end].decode('ascii', errors='replace').rstrip('\r')
                del pending[:end + 1]
                yield line

    def take_commands_from(self, stream) -> threading.Thread:
        """Forward the lines read from a binary stream to the board, in a daemon thread."""

        def forward():
            for line in iter(stream.readline, b''):
                if self.stop_event.is_set():
                    return
                self.write(line if line.endswith(b'\n') else line + b'\n', timeout=5)

        thread = threading.Thread(target=forward, daemon=True, name='board commands')
        thread.start()
        return thread


class PtyBoard:
    """A simulated board behind a pseudo-terminal, at ``self.port`` (``/dev/pts/N``).

    Programs open ``port`` as a serial device: they read the board's reports
    and their writes reach the board as relay commands. Like a real board, it
    transmits whether or not anyone listens; the kernel keeps a few kilobytes
    for a late reader (pyserial discards them when it opens the port) and
    drops the rest.

    Args:
        board: ``telemetry``, ``camera`` or ``json_object``.
        chunk_size: Bytes sent at a time.
        link: Also make this path a symbolic link to the pty (a stable name,
            as udev gives real boards); removed again by :meth:`stop`. An
            existing symbolic link is replaced; any other file is an error.
        **kwargs: Passed to :class:`SimulatedBoard`.
    """

    def __init__(self, board: str = 'telemetry', chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                 link: str | os.PathLike | None = None, **kwargs):
        self.simulated = SimulatedBoard(board, chunk_size, **kwargs)
        self.link = os.fspath(link) if link is not None else None
        self.port = None
        self.reports_sent = 0
        self._master = None
        self._threads = []
        self._sent_event = threading.Condition()

    def start(self) -> 'PtyBoard':
        """Open the pty, make the link and start the board."""
        master, slave = os.openpty()
        try:
            # Raw mode before anyone opens it: no echo of our own output back
            # to us as commands, no newline translation.
            tty.setraw(slave)
            self.port = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        if self.link:
            try:
                self._make_link()
            except BaseException:
                self.stop()
                raise
        self.simulated.start()
        for target, name in ((self._send, 'pty writer'), (self._receive, 'pty reader')):
            thread = threading.Thread(target=target, daemon=True, name=name)
            thread.start()
            self._threads.append(thread)
        return self

    def _make_link(self) -> None:
        if os.path.lexists(self.link) and not os.path.islink(self.link):
            raise PanError(f'cannot link {self.link} to {self.port}: it exists and is not a '
                           'symbolic link; choose another --link path')
        with atomic_path(self.link) as temporary:
            os.symlink(self.port, temporary)

    def _send(self) -> None:
        """Copy the board's chunks to the pty as they come."""
        while not self.simulated.stop_event.is_set():
            chunk = self.simulated.read_chunk(timeout=0.2)
            if not chunk:
                continue
            try:
                os.write(self._master, chunk)
            except OSError as err:
                # EAGAIN: the buffer is full as nobody reads; EIO: nobody has
                # the port open. A real board's bytes would be lost too.
                if err.errno not in (errno.EAGAIN, errno.EIO):
                    raise
            if b'\n' in chunk:
                with self._sent_event:
                    self.reports_sent += chunk.count(b'\n')
                    self._sent_event.notify_all()

    def _receive(self) -> None:
        """Pass what programs write to the pty on to the board."""
        while not self.simulated.stop_event.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError as err:
                if err.errno == errno.EAGAIN:
                    continue
                if err.errno != errno.EIO:
                    raise
                # Nobody has the port open: the master stays "readable" with
                # EIO until someone does, so poll gently.
                self.simulated.stop_event.wait(0.05)
                continue
            try:
                self.simulated.write(data, timeout=1)
            except queue.Full:
                logger.warning('Simulated board: command queue full, dropped {!r}', data)

    def wait(self, count: int | None = None) -> None:
        """Block until ``count`` reports have been sent (forever when None) or :meth:`stop`."""
        with self._sent_event:
            while not self.simulated.stop_event.is_set():
                if count is not None and self.reports_sent >= count:
                    return
                self._sent_event.wait(timeout=0.5)

    def stop(self) -> None:
        """Stop the board, close the pty (the port disappears) and remove the link."""
        self.simulated.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self.link and self.port and os.path.islink(self.link) \
                and os.readlink(self.link) == self.port:
            os.unlink(self.link)
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def __enter__(self) -> 'PtyBoard':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class FakeArduinoSerialHandler(NoOpSerial):
    """PySerial device for ``arduinosimulator://`` URLs: a simulated board in a thread.

    The board runs while the port is open with the board's settings (9600
    baud, 8N1, no flow control, see :attr:`is_config_ok`); with other settings
    it stays silent, as a board read at the wrong speed gives nothing useful.
    """

    def __init__(self, *args, **kwargs):
        self._board = None
        self._input = bytearray()
        self._params = {}
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        """Open port.

        Raises:
            SerialException if the port cannot be opened (a bad URL).
        """
        if self.is_open:
            return
        self._params = self._params_from_url(self.portstr)
        self.is_open = True
        self._reconfigure_port()

    def close(self) -> None:
        """Close port immediately."""
        self.is_open = False
        self._reconfigure_port()

    @property
    def is_config_ok(self) -> bool:
        """Does the caller ask for the correct serial device config?"""
        ok = (self.baudrate == BAUDRATE and self.bytesize == serialutil.EIGHTBITS
              and self.parity == serialutil.PARITY_NONE
              and self.stopbits == serialutil.STOPBITS_ONE
              and not self.rtscts and not self.dsrdtr)
        if not ok and self.is_open:
            logger.warning('Simulated board {} is silent: it talks at 9600 baud 8N1 without flow '
                           'control, not {}', self.portstr, self.get_settings())
        return ok

    def _take_available(self) -> None:
        """Move every chunk the board has sent so far into the input buffer."""
        if self._board is not None:
            self._input.extend(b''.join(_drain(self._board.json_queue)))

    @property
    def in_waiting(self) -> int:
        """The number of input bytes available to read immediately."""
        self._check_open()
        self._take_available()
        return len(self._input)

    def read(self, size: int = 1) -> bytes:
        """Read size bytes.

        If a timeout is set it may return fewer characters than requested.
        With no timeout it will block until the requested number of bytes
        is read.

        Args:
            size: Number of bytes to read.

        Returns:
            Bytes read from the port, of type 'bytes'.
        """
        self._check_open()
        deadline = serialutil.Timeout(self.timeout)
        self._take_available()
        while len(self._input) < size and self._board is not None:
            if deadline.expired():
                break
            wait = deadline.time_left()
            chunk = self._board.read_chunk(timeout=0.2 if wait is None else min(wait, 0.2))
            self._input.extend(chunk)
        data = bytes(self._input[:size])
        del self._input[:size]
        return data

    def readline(self, size: int = -1) -> bytes:
        """Read and return one line from the simulator (logged at debug level)."""
        line = super().readline(size)
        logger.debug('FakeArduinoSerialHandler.readline -> {!r}', line)
        return line

    def write(self, data) -> int:
        """Write the bytes data to the port.

        Args:
            data: The data to write (bytes or bytearray instance).

        Returns:
            Number of bytes written.

        Raises:
            SerialTimeoutException: In case a write timeout is configured for
                the port and the time is exceeded.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'write takes bytes, not {type(data).__name__}')
        self._check_open()
        if self._board is None:
            return len(data)
        try:
            return self._board.write(data, timeout=self.write_timeout)
        except queue.Full:
            raise serialutil.SerialTimeoutException('Write timeout') from None

    @property
    def out_waiting(self) -> int:
        """The number of bytes in the output buffer."""
        self._check_open()
        if self._board is None:
            return 0
        relay_queue = self._board.relay_queue
        with relay_queue.mutex:
            return sum(len(item) for item in relay_queue.queue)

    def flush(self) -> None:
        """Write the buffered data to the output device.

        We interpret that here as waiting until the simulator has taken all of
        the entries from the queue.
        """
        self._check_open()
        while self._board is not None and self._board.running \
                and not self._board.relay_queue.empty():
            time.sleep(0.01)

    def reset_input_buffer(self) -> None:
        """Flush input buffer, discarding all its contents."""
        self._input.clear()
        if self._board is not None:
            _drain(self._board.json_queue)

    def reset_output_buffer(self) -> None:
        """Clear output buffer.

        Aborts the current output, discarding all that is in the output buffer.
        """
        self._check_open()
        if self._board is not None:
            _drain(self._board.relay_queue)

    def _reconfigure_port(self) -> None:
        """Start the board when open with the right settings, stop it otherwise."""
        wanted = self.is_open and self.is_config_ok
        if wanted and self._board is None:
            self._input.clear()
            self._board = SimulatedBoard(cut_first_report=True, **self._params).start()
        elif not wanted and self._board is not None:
            self._board.stop()
            self._board = None
            self._input.clear()

    def _params_from_url(self, url: str) -> dict:
        """Return the SimulatedBoard arguments a ``arduinosimulator://`` URL asks for."""
        expected = ('expected a URL like "arduinosimulator://?board=telemetry" (parameters: '
                    'board, name, chunk_size, report_interval, read_buffer_size, '
                    'write_buffer_size)')
        parts = urllib.parse.urlparse(url or '')
        if parts.scheme != 'arduinosimulator':
            raise serialutil.SerialException(f'{expected}; got {url!r}')
        params = {}
        for option, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
            if len(values) != 1:
                raise serialutil.SerialException(f'{expected}; {option} given {len(values)} times')
            value = values[0]
            if option == 'board':
                if value not in BOARDS:
                    raise serialutil.SerialException(
                        f'unknown board {value!r} in {url}: use one of {", ".join(BOARDS)}')
                params['board'] = value
            elif option == 'name':
                # Lets a program tell its simulated devices apart.
                self.name = value
            elif option in ('chunk_size', 'read_buffer_size', 'write_buffer_size'):
                if not value.isdigit() or int(value) < 1:
                    raise serialutil.SerialException(
                        f'{option} must be a positive integer in {url}, got {value!r}')
                params[option] = int(value)
            elif option == 'report_interval':
                try:
                    params[option] = float(value)
                except ValueError:
                    params[option] = 0.0
                if not 0 < params[option] < 3600:
                    raise serialutil.SerialException(
                        f'report_interval must be seconds between 0 and 3600 in {url}, '
                        f'got {value!r}')
            else:
                raise serialutil.SerialException(f'{expected}; unknown parameter {option!r}')
        return params


Serial = FakeArduinoSerialHandler
