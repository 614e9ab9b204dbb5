"""A simulated PANOPTES Arduino board (telemetry_board.ino, camera_board.ino).

The board behaves like the real sketches: every 2 seconds it sends a
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

:class:`ArduinoSimulator` is the board itself, driven by byte queues;
:mod:`.board_runner` runs it in a thread, :mod:`.pty_board` behind a
pseudo-terminal and :mod:`.protocol_arduinosimulator` as a pyserial device.
"""

import copy
import json
import queue
import random
import threading
import time

from panoptes_cli.logging import logger

BAUDRATE = 9600
# 8N1 framing: a start bit, 8 data bits and a stop bit for every byte.
BITS_PER_BYTE = 10
REPORT_INTERVAL = 2.0
DEFAULT_CHUNK_SIZE = 20
BOARDS = ('telemetry', 'camera', 'json_object')

# Current sensor readings (ADC counts) of the loads when powered, and what
# the computer and weather station add to the main line's reading.
_NOMINAL_CURRENT = {'fan': 28, 'mount': 34, 'cameras': 27}
_OTHER_LOADS = {'computer': 230, 'weather': 68}
_AMPS_PER_COUNT = 0.005
_RELAYS = {'telemetry': ('computer', 'fan', 'mount', 'cameras', 'weather', 'main'),
           'camera': ('camera_00', 'camera_01')}


def _currents(power: dict, vary=lambda: 1.0) -> dict:
    """The ADC counts each load draws with these relays; ``main`` counts the whole line."""
    mains = power.get('main', 1)
    loads = {name: round(counts * vary()) if power.get(name) and mains else 0
             for name, counts in _NOMINAL_CURRENT.items()}
    others = sum(counts for name, counts in _OTHER_LOADS.items() if power.get(name))
    return {'main': sum(loads.values()) + others if mains else 0, **loads}


def _amps(currents: dict) -> dict:
    return {name: round(counts * _AMPS_PER_COUNT, 2) for name, counts in currents.items()}


def _enclosure(temp_00: float) -> dict:
    """What a board's own sensors read at the start: a cool, dry night in the enclosure."""
    return {'humidity': 48.5, 'temperature': [11.4, 11.1, 17.6], 'temp_00': temp_00}


def _telemetry_report() -> dict:
    """The telemetry board's first report: every relay on (fields in the sketch's order)."""
    power = dict.fromkeys(_RELAYS['telemetry'], 1)
    currents = _currents(power)
    return {'name': 'telemetry_board', 'ver': '2017-09-23', 'power': power,
            'current': currents, 'amps': _amps(currents), **_enclosure(14.0)}


def _camera_report() -> dict:
    """The camera board's first report: both cameras on, the mount still (fields in order)."""
    return {'name': 'camera_board', 'inputs': 6, **dict.fromkeys(_RELAYS['camera'], 1),
            'accelerometer': {'x': -6.8, 'y': 7.1, 'z': 1.4, 'o': 6}, **_enclosure(11.0)}


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
    reports = {'telemetry': _telemetry_report, 'camera': _camera_report, 'json_object': dict}
    if board not in reports:
        raise ValueError(f'unknown board {board!r}: use one of {", ".join(BOARDS)}')
    return reports[board]()


class ArduinoSimulator:
    """A PANOPTES Arduino board as its serial port sees it.

    Two queues of bytes stand for the wire, one each way. In a thread, :meth:`run`
    makes a JSON report every ``report_interval`` seconds and hands its bytes to
    ``json_queue`` piece by piece, no faster than ``baudrate`` (8N1) allows. Relay
    commands from ``relay_queue`` change the board's state; later reports show it.
    """

    def __init__(self, message: dict, relay_queue: queue.Queue, json_queue: queue.Queue,
                 chunk_size: int, stop: threading.Event, *, baudrate: int = BAUDRATE,
                 report_interval: float = REPORT_INTERVAL, cut_first_report: bool = False):
        """Create the simulator; nothing happens until :meth:`run`.

        Args:
            message: The report's fields; each report adds ``millis`` and ``report_num``.
            relay_queue: Where the host's relay commands arrive, as bytes objects.
            json_queue: Where each report goes out as JSON bytes, in pieces of at
                most ``chunk_size`` bytes, at the pace of ``baudrate``.
            chunk_size: The largest piece put on ``json_queue`` at once.
            stop: Set it to make :meth:`run` return.
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
        """Until ``stop`` is set: make a report each interval and send it at the line's speed."""
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
        """Act on relay commands as they arrive, until ``next_time`` (monotonic seconds)."""
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
        """Put the next piece of the report being sent on ``json_queue``.

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
        """Return the next report as JSON bytes, numbered and stamped with the board's uptime."""
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
            current = _currents(power, vary=lambda: 1 + jitter(-0.05, 0.05))
            message['current'] = current
            message['amps'] = _amps(current)
