"""PySerial device for ``arduinosimulator://`` URLs: a simulated PANOPTES Arduino board.

The board (:mod:`.arduino_board`) reports JSON every 2 seconds at 9600 baud
and acts on relay commands such as ``fan,off``. Three ways to use one:

- ``serial.serial_for_url('arduinosimulator://?board=telemetry')`` (at 9600
  baud, 8N1): the :class:`FakeArduinoSerialHandler` here. As when connecting to a
  running board, the first report arrives with its start cut off. URL
  parameters: ``board``, ``name`` (sets the device's ``name``), ``chunk_size``
  (bytes per chunk, default 20), ``report_interval`` (seconds, default 2),
  ``read_buffer_size``, ``write_buffer_size`` (queue lengths, in chunks).
- :class:`SimulatedBoard` (:mod:`.board_runner`): the board in a thread, read
  and written in process.
- :class:`PtyBoard` (:mod:`.pty_board`): the board behind a pseudo-terminal, so
  any serial program can open it as a device (``panoptes serial simulate --pty``).

All three, and the board's own names, import from here as well.

>>> import json
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

import queue
import time
import urllib.parse

from serial import serialutil

from panoptes_cli.logging import logger
from panoptes_cli.serial_handlers import NoOpSerial
# The manual documents the simulator's names in this module: they import from here.
from panoptes_cli.serial_handlers.arduino_board import (
    BAUDRATE,
    BITS_PER_BYTE,
    BOARDS,
    DEFAULT_CHUNK_SIZE,
    REPORT_INTERVAL,
    ArduinoSimulator,
    board_message,
)
from panoptes_cli.serial_handlers.board_runner import SimulatedBoard, drain_queue
from panoptes_cli.serial_handlers.pty_board import PtyBoard

__all__ = ['BAUDRATE', 'BITS_PER_BYTE', 'BOARDS', 'DEFAULT_CHUNK_SIZE', 'REPORT_INTERVAL',
           'ArduinoSimulator', 'FakeArduinoSerialHandler', 'PtyBoard', 'Serial', 'SimulatedBoard',
           'board_message']


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
        """True if the port is set as the boards expect: 9600 baud, 8N1, no hardware handshake."""
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
            self._input.extend(b''.join(drain_queue(self._board.json_queue)))

    @property
    def in_waiting(self) -> int:
        """How many bytes of the board's reports can be read without waiting."""
        self._check_open()
        self._take_available()
        return len(self._input)

    def read(self, size: int = 1) -> bytes:
        """Read ``size`` bytes the board sent: fewer if the port's timeout passes first."""
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
        """Send relay-command bytes to the simulated board; return how many it took.

        Raises:
            TypeError: ``data`` is not bytes-like.
            SerialTimeoutException: The board did not take them within ``write_timeout``.
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
        """How many bytes of relay commands the board has not taken yet."""
        self._check_open()
        if self._board is None:
            return 0
        relay_queue = self._board.relay_queue
        with relay_queue.mutex:
            return sum(len(item) for item in relay_queue.queue)

    def flush(self) -> None:
        """Wait until the board has taken every relay command written so far."""
        self._check_open()
        while self._board is not None and self._board.running \
                and not self._board.relay_queue.empty():
            time.sleep(0.01)

    def reset_input_buffer(self) -> None:
        """Drop the report bytes received and not read yet."""
        self._input.clear()
        if self._board is not None:
            drain_queue(self._board.json_queue)

    def reset_output_buffer(self) -> None:
        """Drop the relay commands the board has not taken yet."""
        self._check_open()
        if self._board is not None:
            drain_queue(self._board.relay_queue)

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
