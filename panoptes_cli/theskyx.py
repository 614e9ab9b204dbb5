"""A TCP client for TheSkyX's script server (JavaScript over TCP, port 3040 by default).

TheSkyX runs the JavaScript it receives and answers with the script's output
followed by ``|`` and a status: ``No error. Error = 0.`` on success, else the
error message and its code.
"""

import re
import socket
import time

from panoptes_cli.error import BadConnection, TheSkyXError, TheSkyXKeyError, TheSkyXTimeout
from panoptes_cli.logging import logger

# The end of an answer: the status with its error code, e.g. "No error. Error = 0.".
_STATUS_END = re.compile(rb'Error\s*=\s*-?\d+\.?\s*$')
# Once an answer has started, how long a pause means it is complete (for
# answers without a status).
_QUIET_GAP = 0.5
# TheSkyX's code for a bad key / undefined object in a script.
_KEY_ERROR = re.compile(r'Error\s*=\s*303\b')


def parse_response(text: str) -> str:
    """Return the output part of a TheSkyX answer, raising its error if it reports one.

    >>> parse_response('10.5.0|No error. Error = 0.')
    '10.5.0'
    >>> parse_response('{"ra": 1.5, "note": "a|b"}|No error. Error = 0.')
    '{"ra": 1.5, "note": "a|b"}'
    >>> parse_response('|Object not found. Error = 250.')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.TheSkyXError: TheSkyXError: Object not found. Error = 250.
    >>> parse_response('TypeError: undefined is not a function Error = 303.')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.TheSkyXKeyError: TheSkyXKeyError: Invalid TheSkyX key: TypeError: undefined is not a function Error = 303.

    0.2.29 split on every ``|`` and ``:``, so an answer holding one of them
    failed with ValueError; here the status is what follows the last ``|``.
    """
    text = text.strip()
    output, bar, status = text.rpartition('|')
    if not bar:
        output, status = text, ''
        if re.search(r'\bError\b\s*(=|:)', text):
            status = text
    if status and 'No error' not in status:
        if _KEY_ERROR.search(status):
            raise TheSkyXKeyError(f'Invalid TheSkyX key: {status}')
        raise TheSkyXError(status)
    return output


class TheSkyX:
    """A socket connection for communicating with TheSkyX.

    >>> sky = TheSkyX(port=1, connect=False)
    >>> sky.is_connected
    False
    >>> sky.write('/* Java Script */ Out = 1;')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.BadConnection: BadConnection: Not connected to TheSkyX at localhost:1

    Args:
        host: Where TheSkyX runs.
        port: Its script server's TCP port.
        connect: Connect now (a refused connection is logged and leaves
            ``is_connected`` False, as in 0.2.29).
        connect_timeout: Seconds to wait for the connection.
    """

    def __init__(self, host: str = 'localhost', port: int = 3040, connect: bool = True, *args,
                 connect_timeout: float = 10.0, **kwargs):
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._socket = None
        if connect:
            self.connect()

    @property
    def is_connected(self) -> bool:
        """True while a connection to TheSkyX is open."""
        return self._socket is not None

    def connect(self) -> None:
        """Sets up the connection; logs a warning and stays disconnected when it fails."""
        if self.is_connected:
            return
        try:
            self._socket = socket.create_connection((self._host, self._port),
                                                    timeout=self._connect_timeout)
        except OSError as err:
            logger.warning('Cannot create connection to TheSkyX at {}:{}: {}',
                           self._host, self._port, err.strerror or err)
            return
        logger.info('Connected to TheSkyX via {}:{}', self._host, self._port)

    def disconnect(self) -> None:
        """Close the connection (if open)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _lost(self, err: OSError):
        self.disconnect()
        return BadConnection(f'Connection to TheSkyX at {self._host}:{self._port} lost: '
                             f'{err.strerror or err}')

    def _require_connection(self) -> socket.socket:
        if self._socket is None:
            raise BadConnection(f'Not connected to TheSkyX at {self._host}:{self._port}')
        return self._socket

    def write(self, value: str) -> None:
        """Send ``value`` (a JavaScript string) to TheSkyX."""
        if not isinstance(value, str):
            raise TypeError(f'TheSkyX.write takes a str, not {type(value).__name__}')
        sock = self._require_connection()
        try:
            sock.settimeout(self._connect_timeout)
            sock.sendall(value.encode())
        except OSError as err:
            raise self._lost(err) from None

    def read(self, timeout: float = 5) -> str:
        """Read TheSkyX's answer and return its output part.

        Reads until the answer's status arrives (so long answers split across
        TCP segments are whole; 0.2.29 returned the first 2048 bytes), or,
        for an answer without a status, until it pauses.

        Raises:
            TheSkyXTimeout: If no answer arrives within ``timeout`` seconds.
            TheSkyXKeyError: If TheSkyX reports error 303 (a bad key or object).
            TheSkyXError: If TheSkyX reports another error.
            BadConnection: If not connected, or the connection is lost.
        """
        sock = self._require_connection()
        deadline = time.monotonic() + timeout
        received = bytearray()
        while not _STATUS_END.search(received):
            left = deadline - time.monotonic()
            if received:
                left = min(left, _QUIET_GAP)
            if left <= 0:
                break
            try:
                sock.settimeout(left)
                data = sock.recv(65536)
            except socket.timeout:
                break
            except OSError as err:
                raise self._lost(err) from None
            if not data:
                self.disconnect()
                if not received:
                    raise BadConnection(
                        f'TheSkyX at {self._host}:{self._port} closed the connection')
                break
            received.extend(data)
        if not received:
            raise TheSkyXTimeout(f'TheSkyX at {self._host}:{self._port} did not answer '
                                 f'within {timeout:g} s')
        return parse_response(received.decode('utf-8', errors='replace'))
