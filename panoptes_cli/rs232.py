"""Provides SerialData, a PySerial wrapper, and :func:`listen`, a robust line reader.

Importing this module registers the simulated devices of
:mod:`panoptes_cli.serial_handlers` (``arduinosimulator://``, ``buffers://``,
``no_op://``, ``hooked://``) with PySerial.
"""

import contextlib
import operator
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import serial
from serial.tools.list_ports import comports

from panoptes_cli import serial_handlers
from panoptes_cli.error import BadSerialConnection, InvalidDeserialization, Timeout
from panoptes_cli.logging import logger
from panoptes_cli.limits import LimitExceeded, loads
from panoptes_cli.serializers import from_json
from panoptes_cli.time import utc_now

# Longest line listen() accepts; a device that sends more without a line end
# (wrong baud rate, binary output) is reported instead of filling memory.
MAX_LINE_LENGTH = 65536


def timestamp() -> str:
    """Return the current UTC time as ISO-8601 with milliseconds (honours ``$POCSTIME``).

    >>> import os
    >>> os.environ['POCSTIME'] = '2020-01-01 12:00:00'
    >>> timestamp()
    '2020-01-01T12:00:00.000'
    >>> del os.environ['POCSTIME']
    """
    return utc_now().isoformat(timespec='milliseconds')


def get_serial_port_info(include_links: bool = False) -> list:
    """List this machine's serial ports in device-name order.

    Args:
        include_links: Also list symbolic links to ports (``/dev/serial/by-id/...``).

    Returns:
        pyserial ``ListPortInfo`` objects (``device``, ``description``, ``hwid``,
        ``serial_number``...), as ``serial.tools.list_ports.comports`` gives them.
    """
    return sorted(comports(include_links=include_links), key=operator.attrgetter('device'))


def port_info_record(info) -> dict:
    """Describe one ListPortInfo as a JSON-ready dict; vid and pid as 4-digit hex like lsusb.

    >>> from serial.tools.list_ports_common import ListPortInfo
    >>> info = ListPortInfo('/dev/ttyACM0', skip_link_detection=True)
    >>> info.vid, info.pid, info.serial_number, info.description = 0x2341, 0x43, '7553', 'Arduino Uno'
    >>> record = port_info_record(info)
    >>> record['device'], record['vid'], record['pid'], record['serial_number']
    ('/dev/ttyACM0', '2341', '0043', '7553')
    """
    return {
        'device': info.device,
        'name': info.name,
        'description': info.description,
        'hwid': info.hwid,
        'vid': None if info.vid is None else f'{info.vid:04x}',
        'pid': None if info.pid is None else f'{info.pid:04x}',
        'serial_number': info.serial_number,
        'manufacturer': info.manufacturer,
        'product': info.product,
        'location': info.location,
        'interface': info.interface,
    }


def list_serial_ports(include_links: bool = False) -> list[dict]:
    """Return :func:`get_serial_port_info` as a list of :func:`port_info_record` dicts."""
    return [port_info_record(info) for info in get_serial_port_info(include_links)]


class SerialData:
    """A line-oriented connection to a serial device (or any pyserial URL) that may come and go.

    An observatory runs for months and its devices get power-cycled or unplugged, so
    the connection comes and goes: a ``SerialData`` may exist with no open port. Most
    devices that vanish after the port was opened still look connected
    (``is_connected`` stays True); the failure only shows at the next read or write.

    >>> import serial

    # Let pyserial find the simulated devices
    >>> serial.protocol_handler_packages.append('panoptes_cli.serial_handlers')
    >>> from panoptes_cli.serial_handlers import protocol_buffers as pb

    >>> from panoptes_cli.rs232 import SerialData

    # A device whose input the test writes
    >>> device_listener = SerialData(port='buffers://')

    # Note: A manual reset is no longer required (the buffers start empty),
    # but resetting is harmless.
    >>> pb.ResetBuffers()
    >>> device_listener.is_connected
    True

    >>> device_listener.port
    'buffers://'

    # Device sends event
    >>> pb.SetRBufferValue(b'emit event')

    # Listen for event
    >>> device_listener.read()
    'emit event'

    >>> device_listener.write('ack event')
    9
    >>> pb.GetWBufferValue()
    b'ack event'

    # Remove custom handlers
    >>> serial.protocol_handler_packages.remove('panoptes_cli.serial_handlers')

    Errors of the device (unplugged, reset) while reading or writing raise
    :class:`~panoptes_cli.error.BadSerialConnection`, and so does using a
    closed connection (0.2.29 failed an ``assert`` there instead).
    """

    def __init__(self, port: str | None = None, baudrate: int = 115200, name: str | None = None,
                 timeout: float | None = 2.0, open_delay: float = 0.0, retry_limit: int = 5,
                 retry_delay: float = 0.5, **kwargs):
        """Set up the port and try to open it.

        A device that is not there yet is no error: ``is_connected`` is then False
        and :meth:`connect` can be tried again later.

        Args:
            port: A device path (``/dev/ttyACM0``) or any pyserial URL
                (``socket://host:port``, ``arduinosimulator://...``).
            baudrate: Line speed, for real serial lines.
            name: What logs call this connection; the port by default.
            timeout (float, optional): Seconds a read or a write may wait, default 2.0.
            open_delay: Seconds to let the device settle once the port opens.
            retry_limit: How many empty reads :meth:`read` tries before giving up.
            retry_delay: Seconds :meth:`read` waits between those tries.
            **kwargs: Ignored, for compatibility.

        Raises:
            ValueError: No port, an unknown URL, or settings pyserial refuses
                (a negative baud rate...).
        """
        if not port:
            raise ValueError('SerialData needs a port, e.g. /dev/ttyACM0 or '
                             'arduinosimulator://?board=telemetry')
        serial_handlers.register()
        self.name = name or port
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        try:
            self.ser = serial.serial_for_url(port, do_not_open=True)
        except serial.SerialException as err:
            raise ValueError(f'{port}: {err}') from None
        # 8N1 with no flow control, the same wait for reads and writes.
        self.ser.apply_settings(dict(
            baudrate=baudrate, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE, timeout=timeout, write_timeout=timeout,
            xonxoff=False, rtscts=False, dsrdtr=False))
        try:
            self.ser.open()
        except (serial.SerialException, OSError) as err:
            logger.debug('Unable to open {}: {}', self.name, err)
            return
        if open_delay > 0:
            logger.debug('Opened {}, sleeping for {} seconds', self.name, open_delay)
            time.sleep(open_delay)

    @property
    def port(self) -> str:
        """Name of the port."""
        return self.ser.port

    @property
    def is_connected(self) -> bool:
        """Whether the port is open now (a vanished device may still count as open)."""
        return self.ser.is_open

    def connect(self) -> None:
        """Open the port unless it is open already.

        Raises:
            BadSerialConnection: The port would not open.
        """
        if self.is_connected:
            return
        try:
            self.ser.open()
        except (serial.SerialException, OSError) as err:
            raise BadSerialConnection(f'cannot open {self.name}: {_reason(err)}') from None
        if not self.is_connected:
            raise BadSerialConnection(f'cannot open {self.name}: the port did not open')
        logger.debug('Serial connection established to {}', self.name)

    def disconnect(self) -> None:
        """Close the port.

        Raises:
            BadSerialConnection: Closing failed, or the port stayed open.
        """
        with self._failing_as('closing'):
            self.ser.close()
        if self.is_connected:
            raise BadSerialConnection(f'closing {self.name} failed: it is still open')

    def _check_connected(self) -> None:
        if not self.is_connected:
            raise BadSerialConnection(f'{self.name} is not connected; call connect() first')

    @contextlib.contextmanager
    def _failing_as(self, doing: str) -> Iterator[None]:
        """Turn the device's errors into BadSerialConnection('<doing> <name> failed: <why>')."""
        try:
            yield
        except (serial.SerialException, OSError) as err:
            raise BadSerialConnection(f'{doing} {self.name} failed: {_reason(err)}') from None

    def write_bytes(self, data: bytes) -> int:
        """Write data of type bytes; return how many bytes were written."""
        self._check_connected()
        with self._failing_as('writing to'):
            return self.ser.write(data)

    def write(self, value: str) -> int:
        """Send a string, UTF-8 encoded; return how many bytes went out."""
        return self.write_bytes(value.encode())

    def read_bytes(self, size: int = 1) -> bytes:
        """Return up to ``size`` bytes from the device.

        Fewer come back when the port's timeout runs out first; with a timeout of
        None the call waits for all of them.
        """
        self._check_connected()
        with self._failing_as('reading from'):
            return self.ser.read(size)

    def read_available(self) -> bytes:
        """Read what the device has sent, waiting up to the read timeout for the first byte.

        One call reads a whole burst, where ``readline()`` makes a system call
        per byte.
        """
        self._check_connected()
        with self._failing_as('reading from'):
            return self.ser.read(max(1, self.ser.in_waiting))

    def read(self, retry_limit: int | None = None, retry_delay: float | None = None) -> str:
        """Return the next line the device sends, as text.

        An empty read is tried again after ``retry_delay`` seconds, up to
        ``retry_limit`` times in all; then ``''`` comes back. Bytes that
        are not ASCII are shown as ``\\xNN`` escapes (0.2.29 raised
        UnicodeDecodeError).
        """
        self._check_connected()
        retry_limit = self.retry_limit if retry_limit is None else retry_limit
        retry_delay = self.retry_delay if retry_delay is None else retry_delay
        for attempt in range(retry_limit):
            with self._failing_as('reading from'):
                data = self.ser.readline()
            if data:
                return data.decode('ascii', errors='backslashreplace')
            if attempt + 1 < retry_limit:
                time.sleep(retry_delay)
        return ''

    def get_reading(self) -> tuple[str, str]:
        """Return ``(when, line)``: the next line and the moment it was complete.

        Returns:
            ``when`` is ISO-8601 UTC with milliseconds (0.2.29 gave
            e.g. ``2020-01-01T12:00:00 GMT``, which is not ISO-8601).
        """
        line = self.read()
        return timestamp(), line

    def get_and_parse_reading(self, retry_limit: int = 5) -> tuple[str, Any] | None:
        """Return ``(when, value)`` for the next line that holds JSON, skipping others.

        >>> from panoptes_cli.serial_handlers import protocol_buffers as pb
        >>> pb.ResetBuffers(b'{"humid\\n{"humidity": 42.5, "temp": "12.5 deg"}\\n')
        >>> when, reading = SerialData('buffers://').get_and_parse_reading()
        >>> reading
        {'humidity': 42.5, 'temp': <Quantity 12.5 deg>}

        Args:
            retry_limit: How many lines to try before giving up.

        Returns:
            ``when`` as for :meth:`get_reading`, the value as
            :func:`panoptes_cli.serializers.from_json` reads it; None if no line was JSON.
        """
        for _ in range(max(1, retry_limit)):
            when, line = self.get_reading()
            if not line.strip():
                continue
            try:
                return when, from_json(line)
            except InvalidDeserialization:
                logger.debug('{}: skipping a line that is not JSON: {!r}', self.name, line)
        return None

    def reset_input_buffer(self) -> None:
        """Throw away what the device sent and nobody has read yet.

        An Arduino's output can pile up seconds behind; dropping it and reading the
        next whole line (the first one may be a fragment) gives a fresh reading.
        """
        self.ser.reset_input_buffer()

    def __del__(self):
        """Close the serial device on delete."""
        ser = getattr(self, 'ser', None)
        if ser is not None and ser.is_open:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - nothing to be done while being collected
                pass


def _reason(err: BaseException) -> str:
    """The useful part of a PySerial or OS error message."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


@dataclass(frozen=True)
class Reading:
    """A line a device sent, with the time its end arrived and, when parsed, its JSON value."""

    timestamp: str
    port: str
    line: str
    data: Any = None

    def record(self, raw: bool = False) -> dict:
        """The reading as one NDJSON record: ``data`` (parsed) or ``line`` (raw)."""
        if raw:
            return {'timestamp': self.timestamp, 'port': self.port, 'line': self.line}
        return {'timestamp': self.timestamp, 'port': self.port, 'data': self.data}


@dataclass(frozen=True)
class SkippedLine:
    """A line that was not a JSON object, and why."""

    timestamp: str
    port: str
    line: str
    reason: str


@dataclass(frozen=True)
class Disconnected:
    """The device went away (or could not be reopened); the next attempt is in ``retry_in`` s."""

    port: str
    reason: str
    retry_in: float


@dataclass(frozen=True)
class Reconnected:
    """The device is back."""

    port: str


def _parse_line(line: str) -> tuple[Any, str | None]:
    """Return (value, None) for a JSON object line, else (None, why not)."""
    try:
        value = loads(line)
    except LimitExceeded as err:
        return None, f'refused: {err}'
    except ValueError as err:
        return None, f'not JSON ({err})'
    if not isinstance(value, dict):
        return None, f'not a JSON object (a {type(value).__name__})'
    return value, None


def listen(port: str, baudrate: int = 9600, *, parse: bool = True, timeout: float | None = None,
           retry_delay: float = 0.5, max_retry_delay: float = 10.0,
           poll_interval: float = 0.5, stop: threading.Event | None = None,
           ) -> Iterator[Reading | SkippedLine | Disconnected | Reconnected]:
    """Read a device's lines for ever, surviving its disappearances; yield what happens.

    Yields a :class:`Reading` for every line: with ``parse`` only lines that
    are JSON objects (others give a :class:`SkippedLine`), without it every
    non-empty line as text. Line ends (``\\n``, ``\\r\\n``) are removed. After
    connecting, a first line that does not parse is most likely the tail of a
    report sent before we listened, and is dropped without a word.

    When reading fails (the device was unplugged or reset), yields
    :class:`Disconnected` and tries to reopen the port after ``retry_delay``
    seconds, doubling the delay after every failure up to ``max_retry_delay``,
    yielding :class:`Disconnected` for each failed attempt and
    :class:`Reconnected` when it is back. The port is closed when the
    generator is closed.

    >>> from panoptes_cli.serial_handlers import protocol_buffers as pb
    >>> pb.ResetBuffers(b'eport_num":1}\\r\\n{"humidity": 42}\\r\\nnoise\\r\\n[1, 2]\\r\\n')
    >>> events = listen('buffers://', timeout=0.2)
    >>> next(events).data
    {'humidity': 42}
    >>> next(events).reason, next(events).reason
    ('not JSON (Expecting value: line 1 column 1 (char 0))', 'not a JSON object (a list)')
    >>> next(events)
    Traceback (most recent call last):
      ...
    panoptes_cli.error.Timeout: Timeout: buffers://: no data for 0.2 s; is the device on and sending at 9600 baud?

    Args:
        port: A device (``/dev/ttyACM0``) or PySerial URL (``arduinosimulator://?board=telemetry``).
        baudrate: The device's speed.
        parse: Parse lines as JSON objects (else yield every line as text).
        timeout: Raise :class:`~panoptes_cli.error.Timeout` when no data has
            arrived for this many seconds, even while reconnecting (default: wait for ever).
        retry_delay: Seconds before the first attempt to reopen a lost device.
        max_retry_delay: Longest wait between attempts.
        poll_interval: Longest a read blocks, so timeouts and ``stop`` are noticed.
        stop: When this event is set, the generator ends (within ``poll_interval``),
            for a listener running in a thread.

    Raises:
        panoptes_cli.error.BadSerialConnection: If the port cannot be opened at the start.
        panoptes_cli.error.Timeout: See ``timeout``.
    """
    device = SerialData(port, baudrate=baudrate, timeout=poll_interval)
    device.connect()
    last_data = time.monotonic()
    pending = bytearray()
    first_line = True

    def check_timeout():
        if stop is not None and stop.is_set():
            raise _Stopped()
        if timeout is not None and time.monotonic() - last_data > timeout:
            raise Timeout(f'{port}: no data for {timeout:g} s; is the device on and sending at '
                          f'{baudrate} baud?')

    try:
        while stop is None or not stop.is_set():
            try:
                chunk = device.read_available()
            except BadSerialConnection as err:
                yield from _reconnect(device, port, err.msg, retry_delay, max_retry_delay,
                                      check_timeout)
                pending.clear()
                first_line = True
                continue
            if not chunk:
                check_timeout()
                continue
            last_data = time.monotonic()
            pending.extend(chunk)
            if b'\n' not in chunk:
                if len(pending) > MAX_LINE_LENGTH:
                    yield SkippedLine(timestamp(), port, _text(pending[:80]) + '...',
                                      f'longer than {MAX_LINE_LENGTH} bytes without a line end')
                    pending.clear()
                    first_line = False
                continue
            when = timestamp()
            *lines, rest = pending.split(b'\n')
            pending = bytearray(rest)
            for raw_line in lines:
                line = _text(raw_line).strip()
                if not line:
                    continue
                if not parse:
                    yield Reading(when, port, line)
                    continue
                value, problem = _parse_line(line)
                if problem is None:
                    yield Reading(when, port, line, value)
                elif first_line:
                    logger.debug('{}: dropping a first, partial line {!r}', port, line)
                else:
                    yield SkippedLine(when, port, line, problem)
                first_line = False
    except _Stopped:
        # check_timeout() saw the stop event, while reading or while reconnecting.
        return
    finally:
        device.disconnect()


class _Stopped(Exception):
    """The caller's stop event was set while reconnecting."""


def _text(data: bytes) -> str:
    return bytes(data).decode('utf-8', errors='backslashreplace')


def _reconnect(device: SerialData, port: str, reason: str, delay: float, max_delay: float,
               check_timeout) -> Iterator[Disconnected | Reconnected]:
    """Close the lost device and reopen it with growing delays; yield each failure, then success."""
    try:
        device.disconnect()
    except BadSerialConnection as err:
        logger.debug('{}: {}', port, err.msg)
    while True:
        yield Disconnected(port, reason, delay)
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            check_timeout()
            time.sleep(min(left, 0.2))
        check_timeout()
        try:
            device.connect()
        except BadSerialConnection as err:
            reason = err.msg
            delay = min(delay * 2, max_delay)
            continue
        yield Reconnected(port)
        return
