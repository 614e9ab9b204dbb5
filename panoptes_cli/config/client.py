"""Client of the config server: get and set config items over HTTP.

The server's address comes from the ``host`` and ``port`` arguments, else the
``PANOPTES_CONFIG_HOST`` and ``PANOPTES_CONFIG_PORT`` environment variables (a
``.env`` file in the current directory or above may set them), else
``localhost:6563``.

Each thread keeps one open (keep-alive) connection per server and reuses it,
so a call costs a round trip on loopback rather than a TCP handshake. Calls
time out after :data:`TIMEOUT` seconds instead of hanging.

A failed call (no server, an error answer) is treated two ways. By default, as
panoptes-utils 0.2.29 did, ``get_config`` logs a warning and returns its
``default`` and ``set_config`` logs a warning and returns None, so observatory
code keeps running. With ``strict=True`` (what the ``panoptes`` commands use) the
failure raises :class:`~panoptes_cli.error.BadConnection` or
:class:`~panoptes_cli.error.InvalidConfig`.

The client speaks HTTP with the standard library's ``http.client``: importing
``requests`` alone takes longer (about 90 ms) than a whole ``panoptes config get``
should, and it adds per-call overhead this one-request protocol does not need.
"""

import functools
import http.client
import json
import os
import socket
import sys
import threading
import time

from panoptes_cli.error import BadConnection, InvalidConfig, PanError, Timeout
from panoptes_cli.serializers import from_json, to_json

DEFAULT_HOST = 'localhost'
DEFAULT_PORT = 6563
# Seconds to wait for a connection or an answer.
TIMEOUT = 10.0
# The key a client sets to false to stop the server (as panoptes-utils' clients do).
RUNNING_KEY = 'config_server.running'

_HEADERS = {'Content-Type': 'application/json'}


@functools.lru_cache(maxsize=8)
def _dotenv_settings(directory: str) -> dict:
    from dotenv import dotenv_values, find_dotenv

    path = find_dotenv(usecwd=True)
    return dotenv_values(path) if path else {}


def _setting(name: str):
    value = os.environ.get(name)
    if value:
        return value
    return _dotenv_settings(os.getcwd()).get(name) or None


def server_address(host=None, port=None, default_host: str = DEFAULT_HOST) -> tuple:
    """Return the config server's ``(host, port)``: arguments, else environment (or ``.env``), else defaults.

    >>> server_address('10.0.0.2', '8000')
    ('10.0.0.2', 8000)
    """
    host = host or _setting('PANOPTES_CONFIG_HOST') or default_host
    if port is None or port == '':
        port = _setting('PANOPTES_CONFIG_PORT') or DEFAULT_PORT
    try:
        port = int(port)
        if not 0 <= port <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidConfig(f'bad config server port {port!r}: a port is a number from 1 to 65535; '
                            'check PANOPTES_CONFIG_PORT') from None
    return host, port


def config_url(host: str, port: int) -> str:
    """Return the server's base URL.

    >>> config_url('::1', 6563)
    'http://[::1]:6563'
    """
    return f'http://[{host}]:{port}' if ':' in host else f'http://{host}:{port}'


class _Connection(http.client.HTTPConnection):
    """A keep-alive HTTP connection that sends small requests without Nagle's delay."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_local = threading.local()


def _forget_connections():
    # A forked child must not share its parent's sockets.
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_connections)


def _connection(host: str, port: int):
    """Return this thread's connection to ``host:port`` and whether it was used before."""
    pool = getattr(_local, 'pool', None)
    if pool is None:
        pool = _local.pool = {}
    connection = pool.get((host, port))
    if connection is not None:
        return connection, True
    connection = pool[(host, port)] = _Connection(host, port, timeout=TIMEOUT)
    return connection, False


def _post(host: str, port: int, path: str, body: bytes) -> str:
    """POST a JSON body and return the answer's text; failures raise BadConnection or InvalidConfig."""
    connection, reused = _connection(host, port)
    url = config_url(host, port)
    while True:
        try:
            connection.request('POST', path, body, _HEADERS)
            response = connection.getresponse()
            text = response.read().decode('utf-8')
            break
        except ConnectionRefusedError:
            connection.close()
            raise BadConnection(f'config server at {url}: connection refused; '
                                "start it with 'panoptes config run'") from None
        except TimeoutError:
            connection.close()
            raise BadConnection(f'config server at {url}: no answer within {TIMEOUT:g} s; '
                                'is it overloaded or stopped?') from None
        except (ConnectionError, http.client.HTTPException) as err:
            connection.close()
            # A kept-alive connection the server has since closed: the request
            # never reached it, so sending it again on a new connection is safe.
            if reused:
                reused = False
                continue
            raise BadConnection(f'config server at {url}: connection lost: {err or type(err).__name__}'
                                ) from None
        except OSError as err:
            connection.close()
            raise BadConnection(f'config server at {url}: {err.strerror or err}') from None
    if response.status != 200:
        raise _failure(host, port, response.status, text)
    return text


def _failure(host: str, port: int, status: int, text: str) -> PanError:
    """Return the error for a non-200 answer, with the server's own message."""
    try:
        message = json.loads(text)['msg']
    except (ValueError, TypeError, KeyError):
        message = ' '.join(text.split())[:200] or 'no message'
    url = config_url(host, port)
    if status == 400:
        return InvalidConfig(f'config server at {url}: {message}')
    return BadConnection(f'config server at {url}: HTTP {status}: {message}')


def _log(verbose: bool, message: str) -> None:
    """Log at debug (verbose) or trace level, without importing loguru when nobody listens.

    Importing the logger costs more than a whole config request, so it is only
    loaded here if the program already uses it or asked for DEBUG/TRACE logs.
    """
    module = sys.modules.get('panoptes_cli.logging')
    if module is None:
        if os.environ.get('PANOPTES_LOG_LEVEL', '').upper() not in ('DEBUG', 'TRACE'):
            return
        from panoptes_cli import logging as module
    module.logger.log('DEBUG' if verbose else 'TRACE', message)


def _warn(message: str) -> None:
    from panoptes_cli.logging import logger

    logger.warning(message)


def get_config(key=None, host=None, port=None, endpoint='get-config', parse=True, default=None,
               verbose=True, strict=False):
    """Ask the config server for one value (or the whole config).

    ``key`` is dotted, with list indexes (``cameras.devices[1].model``); None asks
    for everything.

    Examples (the server here serves the bundled default unit config):

    >>> import os
    >>> from panoptes_cli.config.helpers import default_config_file
    >>> from panoptes_cli.config.server import config_server
    >>> server = config_server(default_config_file(), host='127.0.0.1', port=0, load_local=False)
    >>> os.environ['PANOPTES_CONFIG_HOST'], os.environ['PANOPTES_CONFIG_PORT'] = '127.0.0.1', str(server.port)

    >>> get_config(key='name')
    'Testing PANOPTES Unit'

    >>> get_config(key='location.horizon')
    <Quantity 30. deg>

    >>> # With no parsing, the raw string (including quotes) is returned.
    >>> get_config(key='location.horizon', parse=False)
    '"30.0 deg"'

    >>> get_config(key='cameras.devices[1].model')
    'canon_gphoto2'

    >>> # Returns `None` if key is not found.
    >>> foobar = get_config(key='foobar')
    >>> foobar is None
    True

    >>> # But you can supply a default.
    >>> get_config(key='foobar', default='baz')
    'baz'

    >>> # Can use Quantities as well
    >>> from astropy import units as u
    >>> get_config(key='foobar', default=42 * u.meter)
    <Quantity 42. m>

    >>> # With no server, a warning is logged and the default comes back, unless strict.
    >>> server.terminate(); server.join()
    >>> get_config(key='name', default='PAN000')
    'PAN000'
    >>> get_config(key='name', strict=True)
    Traceback (most recent call last):
      ...
    panoptes_cli.error.BadConnection: BadConnection: config server at http://127.0.0.1:...: connection refused; start it with 'panoptes config run'
    >>> del os.environ['PANOPTES_CONFIG_HOST'], os.environ['PANOPTES_CONFIG_PORT']

    Notes:
        Calls log at the *trace* level, or *debug* with ``verbose=True``.
        A key whose value is ``null`` counts as missing.

    Args:
        key (str): The key to get, see Examples; None for the whole config.
        host (str, optional): Server host; else $PANOPTES_CONFIG_HOST, else 'localhost'.
        port (str or int, optional): Server port; else $PANOPTES_CONFIG_PORT, else 6563.
        endpoint (str, optional): Which of the server's paths to ask, default
            'get-config' (:func:`server_is_running` asks 'heartbeat').
        parse (bool, optional): Turn the answer into Python objects (Quantities, dates)
            with :func:`panoptes_cli.serializers.from_json`, default True; with False,
            return the JSON text.
        default (optional): What to return if the key is missing, default None.
        verbose (bool, optional): Log at debug rather than trace level, default True.
        strict (bool, optional): Raise when the server cannot be reached or refuses
            the request, instead of logging a warning and returning ``default``.

    Returns:
        The config entry.

    Raises:
        BadConnection: With ``strict``, if the config server cannot be reached or fails.
        InvalidConfig: With ``strict``, if the server rejects the key (e.g. ``a..b``).
    """
    try:
        host, port = server_address(host, port)
        body = json.dumps({'key': key}).encode()
        text = _post(host, port, '/' + endpoint.lstrip('/'), body)
    except PanError as err:
        if strict:
            raise
        _warn(f'get_config({key!r}) returns its default {default!r}: {err.msg}')
        return default
    _log(verbose, f'Config server {config_url(host, port)}: {key!r} = {text[:80]}')
    if text == 'null':
        return default
    if not parse:
        return text
    return from_json(text)


def set_config(key, new_value, host=None, port=None, parse=True, strict=False):
    """Send ``{key: new_value}`` to the config server, which sets it.

    ``key`` is dotted, as for :func:`get_config`; missing parent mappings are
    created. The server answers once the value is set (and, if it saves
    local changes, once they are on disk).

    Examples:

    >>> import os
    >>> from panoptes_cli.config.helpers import default_config_file
    >>> from panoptes_cli.config.server import config_server
    >>> server = config_server(default_config_file(), host='127.0.0.1', port=0, load_local=False)
    >>> os.environ['PANOPTES_CONFIG_HOST'], os.environ['PANOPTES_CONFIG_PORT'] = '127.0.0.1', str(server.port)

    >>> from astropy import units as u

    >>> # Can use astropy units.
    >>> set_config('location.horizon', 35 * u.degree)
    {'location.horizon': <Quantity 35. deg>}

    >>> get_config(key='location.horizon')
    <Quantity 35. deg>

    >>> # String equivalent works for 'deg', 'm', 's'.
    >>> set_config('location.horizon', '30 deg')
    {'location.horizon': <Quantity 30. deg>}

    >>> # Without parsing, the answer is plain JSON values.
    >>> set_config('location.horizon', 45 * u.degree, parse=False)
    {'location.horizon': '45.0 deg'}

    >>> set_config('cameras.devices[5].model', 'zwo', strict=True)
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidConfig: InvalidConfig: config server at http://127.0.0.1:...: cannot set cameras.devices[5].model: list index 5 is out of range, cameras.devices has 2 item(s)

    >>> # Without strict, a failure logs a warning and gives None.
    >>> set_config('cameras.devices[5].model', 'zwo') is None
    True

    >>> server.terminate(); server.join()
    >>> del os.environ['PANOPTES_CONFIG_HOST'], os.environ['PANOPTES_CONFIG_PORT']

    Args:
        key (str): The dotted key to set (as for :func:`get_config`).
        new_value (scalar/object): Anything :func:`panoptes_cli.serializers.to_json` can write.
        host (str, optional): As for :func:`get_config`.
        port (str or int, optional): As for :func:`get_config`.
        parse (bool, optional): Turn the answer's values back into Python objects
            (Quantities, dates) with :func:`panoptes_cli.serializers.from_json`,
            default True. With False, the values stay as plain JSON gives them.
        strict (bool, optional): Raise when the server cannot be reached or refuses
            the value, instead of logging a warning and returning None.

    Returns:
        dict: What was set, ``{key: value}``; None after a failure without ``strict``.

    Raises:
        BadConnection: With ``strict``, if the config server cannot be reached or fails.
        InvalidConfig: With ``strict``, if the server rejects the key or value.
    """
    try:
        host, port = server_address(host, port)
        text = _post(host, port, '/set-config', to_json({key: new_value}).encode())
    except PanError as err:
        if strict:
            raise
        _warn(f'set_config({key!r}) changed nothing: {err.msg}')
        return None
    _log(True, f'Config server {config_url(host, port)}: set {text[:80]}')
    if not parse:
        return json.loads(text)
    return from_json(text)


def server_is_running(host=None, port=None) -> bool:
    """Thin-wrapper to check server: True if a config server answers its heartbeat."""
    try:
        return get_config(endpoint='heartbeat', host=host, port=port, verbose=False, strict=True) is True
    except PanError:
        return False


def wait_for_server(host=None, port=None, timeout: float = TIMEOUT, interval: float = 0.2) -> None:
    """Return once a config server answers at the address, waiting at most ``timeout`` seconds.

    For units whose services start together: a cron job or systemd unit can wait for
    the config server instead of failing because it is still starting.

    Raises:
        Timeout: Nothing answered in time.
    """
    host, port = server_address(host, port)
    deadline = time.monotonic() + timeout
    while not server_is_running(host, port):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f'config server at {config_url(host, port)}: no answer within '
                          f'{timeout:g} s; start it with \'panoptes config run\'')
        time.sleep(min(interval, left))


def reset_config(host=None, port=None, load_local=None) -> dict:
    """Ask the server to reload its config files, dropping changes that were not saved.

    Args:
        host (str, optional): As for :func:`get_config`.
        port (str or int, optional): As for :func:`get_config`.
        load_local (bool, optional): Merge the local files or not; default: as
            the server was started. ``False`` goes back to the defaults (a server
            that saves changes first renames its local file to a backup).

    Returns:
        dict: The server's answer, ``{"success": true, "msg": ...}``, with
        ``"backup"`` (the old local file's new path) when one was made.
    """
    host, port = server_address(host, port)
    request = {'reset': True}
    if load_local is not None:
        request['load_local'] = bool(load_local)
    return json.loads(_post(host, port, '/reset-config', json.dumps(request).encode()))


def stop_server(host=None, port=None, timeout: float = TIMEOUT) -> None:
    """Stop a config server and wait until it no longer answers.

    The server finishes the requests in hand (saving what they set) first.

    Raises:
        BadConnection: If no server answers at that address.
        Timeout: If it still answers after ``timeout`` seconds.
    """
    host, port = server_address(host, port)
    _post(host, port, '/set-config', json.dumps({RUNNING_KEY: False}).encode())
    deadline = time.monotonic() + timeout
    while server_is_running(host, port):
        if time.monotonic() > deadline:
            raise Timeout(f'config server at {config_url(host, port)}: still running '
                          f'{timeout:g} s after being asked to stop')
        time.sleep(0.05)
