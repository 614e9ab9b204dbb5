"""The config server: one process that serves a unit's configuration over HTTP.

Every program on an observatory host asks it for settings. It is a bottle
application served by waitress, a production WSGI server: a thread pool
answers requests side by side (bottle's own server handles one at a time
and is meant for development), connections are kept alive without Nagle
stalls (waitress sets ``TCP_NODELAY``), and it is pure Python, so it
installs anywhere the rest of panoptes-cli does.

Endpoints (each takes a JSON object by POST; every answer is JSON):

``/get-config``
    ``{"key": "location.horizon"}`` gives the value (``"30.0 deg"``); a null
    key gives the whole config and a missing key ``null``. A GET with
    ``?key=...`` works too.
``/set-config``
    ``{"location.horizon": "45 deg"}`` sets each dotted key (creating missing
    parents) and echoes what it set. Setting ``config_server.running`` to
    false stops the server.
``/reset-config``
    ``{"reset": true}`` reloads the config files, dropping unsaved changes;
    add ``"load_local": false`` to go back to the defaults.
``/heartbeat``
    ``true`` while the server runs (or, given ``{"key": ...}``, that value).

Bad input (invalid JSON, a bad key or list index, a wrong type) gets HTTP 400
with ``{"success": false, "msg": "..."}`` and the server carries on.

Web pages a browser on the host opens must not reach it: bodies are taken only
as ``application/json`` (415 otherwise), and a foreign ``Origin`` or a ``Host``
that does not name the server is refused (403); see :class:`RequestGuard`.
Input is bounded (:mod:`panoptes_cli.limits`): a body of at most 1 MiB, keys and
values nesting at most 100 levels. Idle, slow and surplus connections are
closed (:data:`CONNECTION_LIMIT`), so they cannot keep other clients out.

Sets are serialized, so none is lost to another; with ``save_local`` each set is on
disk (atomic write, fsync) and read back before it is acknowledged, so even
``kill -9`` loses nothing a client was told was set, and a set that could not
be saved (or would not load again) changes nothing.

Values are stored as they travel: the files' Quantities as ``"30.0 deg"``, times
as ISO strings, and set values exactly as sent. YAML is loaded safely: tags never
build Python objects.
"""

import copy
import functools
import gc
import ipaddress
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time

import bottle

from panoptes_cli.config.client import RUNNING_KEY, config_url, server_address
from panoptes_cli.config.helpers import (
    assign,
    base_config,
    config_changes,
    deep_merge,
    default_config_file,
    is_bundled_config,
    load_config,
    local_config_path,
    lookup,
    normalized_value,
    parse_config_text,
    plain_config,
    top_name,
)
from panoptes_cli.error import BadConnection, InvalidConfig, PanError
from panoptes_cli.files import atomic_write
from panoptes_cli.limits import MAX_DEPTH, LimitExceeded, check_depth, check_key, loads
from panoptes_cli.serializers import serialize_all_objects, serialize_object, to_yaml

# What the local file says when the unit has changed nothing (it loads as no settings).
NO_CHANGES = '# No local changes: every value is as in {}\n'

# The server listens on loopback only unless told otherwise.
DEFAULT_HOST = '127.0.0.1'
# Seconds config_server() waits for the new process to listen.
STARTUP_TIMEOUT = 60.0
# Request bodies larger than this are refused (with a JSON answer); a config value
# is small. waitress itself drops anything over WAITRESS_MAX_BODY_BYTES unread.
MAX_BODY_BYTES = 1024 * 1024
WAITRESS_MAX_BODY_BYTES = 16 * MAX_BODY_BYTES
# Worker threads. Requests take microseconds of Python (under the GIL), so more
# threads only add switching: measured on 2 cores, 2 threads served 8 clients with
# ~200 us of server CPU per request against ~245 us with 8. A server that saves
# its sets holds a thread per set until the save is on disk, and one save covers
# every set waiting for it, so it gets more threads to let saves be shared.
THREADS = 2
SAVING_THREADS = 8

# Connections: a client holds no thread while it is idle (waitress reads
# without blocking), only a socket. Past CONNECTION_LIMIT the idlest are closed
# to make room, so idle or slow connections can never keep a client out.
# IDLE_TIMEOUT closes kept-alive connections nobody uses (clients reconnect
# unseen); a request must arrive whole within REQUEST_READ_TIMEOUT of its
# first byte (a "slowloris" sends one byte at a time). A host other than this
# one may hold at most CONNECTIONS_PER_CLIENT.
CONNECTION_LIMIT = 1000
IDLE_TIMEOUT = 30.0
REQUEST_READ_TIMEOUT = 10.0
CONNECTIONS_PER_CLIENT = 64
CLEANUP_INTERVAL = 1.0
# Names a browser may use for a server on this host that DNS rebinding cannot take.
LOOPBACK_NAMES = frozenset({'localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback'})
# Addresses that mean "every interface".
ANY_ADDRESS = frozenset({'0.0.0.0', '::', ''})

_MISSING = object()


class CustomJSONEncoder(json.JSONEncoder):
    """A JSON encoder that writes Quantities, times and numpy values as panoptes does."""

    def default(self, obj):
        """Custom serialization of each object, by :func:`panoptes_cli.serializers.serialize_object`."""
        value = serialize_object(obj)
        if value is obj:
            return super().default(obj)
        return value


def _to_json(value) -> str:
    return json.dumps(value, cls=CustomJSONEncoder)


class ConfigStore:
    """The live config of a server: thread-safe gets and sets, saved to the local file.

    Args:
        config_files (str or list): The config file(s) to serve.
        load_local (bool): Merge each file's ``<stem>_local.yaml``.
        save_local (bool): Save the running config's changes to the local file of
            the last config file after every set, before acknowledging it, so a
            restart comes back to them. Only the values that differ from the
            config files are written (0.2.29 copied the whole config there, which
            shadowed every later edit of the main file).
    """

    def __init__(self, config_files, load_local: bool = True, save_local: bool = False):
        if isinstance(config_files, (str, os.PathLike)):
            config_files = [config_files]
        self.config_files = [str(name) for name in config_files]
        self.load_local = load_local
        self.save_local = save_local
        self.local_path = local_config_path(self.config_files[-1])
        if save_local and is_bundled_config(self.config_files[-1]):
            raise InvalidConfig(f'{self.config_files[-1]}: cannot save changes beside the default '
                                'config bundled with panoptes-cli; serve a copy of your own '
                                '(panoptes config run pocs.yaml) or do not save local changes')
        if save_local and not os.access(self.local_path.parent, os.W_OK):
            raise InvalidConfig(f'{self.local_path.parent}: not writable, so changes cannot be '
                                f'saved to {self.local_path.name}; do not save local changes '
                                '(--no-save-local) or serve a config from a writable directory')
        # _lock guards the config. With save_local, sets are queued and one
        # thread at a time (holding _save_lock) applies every set waiting to a
        # copy, saves it and only then makes it the live config, so a set that
        # cannot be saved changes nothing, and one save covers many sets.
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue = []
        self._config = self._load(load_local)
        # What the local file's changes are measured against.
        self._base = base_config(self.config_files, load_local) if save_local else None

    def _load(self, load_local: bool) -> dict:
        return plain_config(load_config(self.config_files, parse=True, load_local=load_local,
                                        strict=True))

    def get_json(self, key=None) -> str:
        """Return the value at ``key`` (None: the whole config) as JSON; ``null`` if missing."""
        with self._lock:
            value = lookup(self._config, key, _MISSING)
            return 'null' if value is _MISSING else _to_json(value)

    def set(self, updates: dict) -> dict:
        """Set each ``{dotted key: value}``, all or none, and return what was set.

        Values are stored as text the way a reload of the saved file gives them back
        (``"37 deg"`` is kept, and answered, as ``"37.0 deg"``), which clients read as
        a Quantity.
        A key and value together may nest at most :data:`~panoptes_cli.limits.MAX_DEPTH`
        levels. With ``save_local``, the whole config is written as YAML and
        read back before the set is acknowledged; returns once it is on disk,
        and if it cannot be saved, raises and changes nothing.
        """
        if not isinstance(updates, dict) or not updates:
            raise InvalidConfig('nothing to set: send a JSON object like {"location.horizon": "45 deg"}')
        for key, value in updates.items():
            _check_setting(key, value)
        values = {key: normalized_value(value) for key, value in updates.items()}
        if not self.save_local:
            with self._lock:
                _assign_all(self._config, values)
            return values
        pending = _PendingSet(values)
        with self._queue_lock:
            self._queue.append(pending)
        with self._save_lock:
            if not pending.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if pending.error is not None:
            raise pending.error
        return values

    def _commit(self, batch: list) -> None:
        """Apply queued sets to a copy of the config, save it and make it live; or fail them all."""
        with self._lock:
            # A structural copy (fast): the live config stays as it is until saved.
            candidate = serialize_all_objects(self._config)
        applied = []
        for pending in batch:
            try:
                _assign_all(candidate, pending.updates)
            except PanError as err:
                pending.error = err
            else:
                applied.append(pending)
            pending.done = True
        if not applied:
            return
        try:
            self._write(candidate, [pending.updates for pending in applied])
        except InvalidConfig as err:
            if len(applied) > 1:
                # One set spoiled the save: try each alone, so only it fails.
                for pending in applied:
                    pending.error = None
                    self._commit([pending])
                return
            applied[0].error = err
            return
        except PanError as err:
            for pending in applied:
                pending.error = err
            return
        with self._lock:
            self._config = candidate

    def _write(self, config: dict, sets: list) -> None:
        """Save what ``config`` changes to the local file, once it reads back with every value of ``sets``."""
        keys = ', '.join(key for updates in sets for key in updates)
        changes = config_changes(config, self._base)
        try:
            text = to_yaml(changes) if changes else NO_CHANGES.format(self.config_files[-1])
            reloaded = parse_config_text(text, str(self.local_path), parse=False) or {}
        except PanError as err:
            raise InvalidConfig(f'cannot set {keys}: the config would not save and load again: '
                                f'{err.msg}') from None
        reloaded = deep_merge(copy.deepcopy(self._base), reloaded)
        for updates in sets:
            for key, value in updates.items():
                if plain_config(lookup(reloaded, key)) != value:
                    raise InvalidConfig(f'cannot set {key}: the value would not read back as '
                                        'it was sent from the saved YAML')
        try:
            atomic_write(self.local_path, text)
        except (OSError, UnicodeError) as err:
            reason = getattr(err, 'strerror', None) or str(err)
            raise PanError(f'{keys} not set: cannot save to {self.local_path}: {reason}') from None

    def reset(self, load_local=None) -> tuple[list, str | None]:
        """Reload the config files, dropping unsaved changes; return the files read and any backup.

        Args:
            load_local (bool, optional): Merge the local files; default as at start.
                With ``False`` and ``save_local``, the local file is renamed to a
                backup (``pocs_local.yaml.<UTC time>.bak``), so the defaults also
                survive a restart and the unit's changes are not lost.

        Returns:
            The files read, and the backup's path (None if none was made).
        """
        load_local = self.load_local if load_local is None else load_local
        config = self._load(load_local)
        base = base_config(self.config_files, self.load_local) if self.save_local else None
        backup = None
        with self._save_lock:
            if self.save_local and not load_local and self.local_path.exists():
                stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
                backup = self.local_path.with_name(f'{self.local_path.name}.{stamp}.bak')
                try:
                    os.replace(self.local_path, backup)
                except OSError as err:
                    raise PanError(f'config not reset: cannot move {self.local_path} to '
                                   f'{backup.name}: {err.strerror or err}') from None
            with self._lock:
                self._config = config
                self._base = base
        files = list(self.config_files)
        if load_local:
            files += [str(local_config_path(name)) for name in self.config_files
                      if local_config_path(name).exists()]
        return files, None if backup is None else str(backup)


class _PendingSet:
    """A set waiting to be saved; ``done`` once a save covered it (``error`` if it failed)."""

    def __init__(self, updates: dict):
        self.updates = updates
        self.done = False
        self.error = None


def _check_setting(key, value) -> None:
    """Raise InvalidConfig unless ``key`` is a dotted key and with ``value`` nests at most MAX_DEPTH."""
    top_name(key)  # checks the key
    try:
        check_depth(value, MAX_DEPTH - check_key(key))
    except LimitExceeded as err:
        raise InvalidConfig(f'cannot set {key[:60]}: the key and its value are {err}; a config '
                            f'nests at most {MAX_DEPTH} levels') from None


def _assign_all(config: dict, values: dict) -> None:
    """Set several keys; if one fails, put back what the others changed."""
    if len(values) == 1:
        # assign() changes nothing unless it can set the whole key.
        [(key, value)] = values.items()
        assign(config, key, value)
        return
    top_names = {top_name(key) for key in values}
    saved = {name: copy.deepcopy(config[name]) for name in top_names if name in config}
    try:
        for key, value in values.items():
            assign(config, key, value)
    except PanError:
        for name in top_names:
            if name in saved:
                config[name] = saved[name]
            else:
                config.pop(name, None)
        raise


# --- The bottle application -------------------------------------------------------------

class _BadRequest(PanError):
    """The request itself is malformed (HTTP 400)."""

    status = 400


class _TooLarge(_BadRequest):
    """The request body is larger than any config value should be (HTTP 413)."""

    status = 413


class _Forbidden(_BadRequest):
    """The request names another host or comes from a web page (HTTP 403)."""

    status = 403


class _NotJSON(_BadRequest):
    """A body that does not say it is JSON (HTTP 415)."""

    status = 415


# Endpoints that change the server's state.
_STATE_CHANGING = frozenset({'/set-config', '/reset-config'})


class RequestGuard:
    """Decide which requests the server answers: its own names, no web pages, JSON bodies.

    A web page the host's browser opens can send requests to the server. It
    cannot set a JSON ``Content-Type`` without the browser first asking the
    server's leave (a CORS preflight, which is never granted), its browser
    names the page's site in ``Origin``, and a page reaching the server through
    a name it controls (DNS rebinding) sends that name as ``Host``. So the
    server answers only ``Host`` values naming it (loopback names and
    addresses, the address it listens on, and ``allow_hosts``; any address
    when it listens on every interface, since rebinding needs a name), refuses
    an ``Origin`` other than its own, and takes bodies only as JSON.

    >>> guard = RequestGuard('127.0.0.1', 6563)
    >>> guard.host_allowed('localhost:6563'), guard.host_allowed('evil.example:6563')
    (True, False)
    >>> guard.origin_allowed('http://127.0.0.1:6563'), guard.origin_allowed('http://evil.example')
    (True, False)
    """

    def __init__(self, bound_host: str, port: int, allow_hosts=()):
        self.port = port
        self.any_address = bound_host in ANY_ADDRESS
        names = set(LOOPBACK_NAMES) | {_host_name(bound_host)}
        names |= {_host_name(name) for name in allow_hosts}
        if self.any_address:
            names |= {_host_name(socket.gethostname()), _host_name(socket.getfqdn())}
        self.names = frozenset(names - {''})

    def host_allowed(self, host: str) -> bool:
        """Return True if a ``Host`` header (``name[:port]``) names this server."""
        name = _host_name(host)
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or self.any_address

    def origin_allowed(self, origin: str) -> bool:
        """Return True if an ``Origin`` header is this server itself (a page it served)."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(origin)
            port = parts.port or {'http': 80, 'https': 443}.get(parts.scheme)
        except ValueError:
            return False
        return (parts.scheme in ('http', 'https') and port == self.port
                and parts.hostname is not None and self.host_allowed(parts.hostname))

    def check(self, request) -> None:
        """Raise _Forbidden or _NotJSON for a request this server must not answer."""
        host = request.environ.get('HTTP_HOST')
        # HTTP/1.0 clients may send no Host; browsers always send one.
        if host is not None and not self.host_allowed(host):
            raise _Forbidden(f'Host {host[:100]!r} does not name this server; if clients reach it '
                             "by that name, start it with '--allow-host NAME'")
        origin = request.environ.get('HTTP_ORIGIN')
        if origin is not None and not self.origin_allowed(origin):
            raise _Forbidden(f'requests from web pages ({origin[:100]}) are refused')
        # A body, or any request that changes state, must say it is JSON
        # (an empty POST to /heartbeat carries nothing to trust).
        if (request.content_length > 0 or request.path in _STATE_CHANGING) \
                and not _is_json(request):
            raise _NotJSON(f'{request.path} takes JSON: send the header '
                           "'Content-Type: application/json'")


def _is_json(request) -> bool:
    media_type = request.environ.get('CONTENT_TYPE', '').split(';', 1)[0]
    return media_type.strip().lower() == 'application/json'


def _host_name(host: str) -> str:
    """The name or address in a ``Host`` header: no port or brackets, lower case.

    >>> _host_name('[::1]:6563'), _host_name('LocalHost.:6563'), _host_name('10.0.0.2')
    ('::1', 'localhost', '10.0.0.2')
    """
    host = host.strip().lower()
    if host.startswith('['):
        host = host[1:].partition(']')[0]
    elif host.count(':') == 1:
        host = host.partition(':')[0]
    return host.rstrip('.')


def _reject_constant(name):
    raise ValueError(f'{name} is not a number JSON allows')


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f'{text[:40]} is too large for a number')
    return value


def _request_json():
    """Return the request body decoded from JSON, or None for an empty body."""
    if bottle.request.content_length > MAX_BODY_BYTES:
        raise _TooLarge(f'request body of {bottle.request.content_length} bytes is larger than '
                        f'the {MAX_BODY_BYTES} bytes allowed')
    raw = bottle.request.body.read()
    if not raw.strip():
        return None
    try:
        return loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except LimitExceeded as err:
        raise _BadRequest(f'request body refused: {err}; a config nests at most '
                          f'{MAX_DEPTH} levels') from None
    except ValueError as err:
        raise _BadRequest(f'invalid JSON in the request body: {err}') from None


def _failure(message: str) -> str:
    return json.dumps({'success': False, 'msg': message})


def _json_endpoint(handler):
    """Run an endpoint: JSON out, bad input as 400 with a message, never a crash."""
    @functools.wraps(handler)
    def endpoint():
        response = bottle.response
        response.content_type = 'application/json'
        try:
            bottle.request.app.config['panoptes.guard'].check(bottle.request)
            return handler()
        except (_BadRequest, InvalidConfig) as err:
            response.status = getattr(err, 'status', 400)
            return _failure(err.msg)
        except Exception as err:  # noqa: BLE001 - the server must answer, and stay up
            if isinstance(err, PanError):
                message = err.msg
            else:
                message = f'internal error: {type(err).__name__}: {err}'
            log_error = bottle.request.app.config['panoptes.error_log']
            if log_error is not None:
                log_error(f'{bottle.request.path}: {message}')
            response.status = 500
            return _failure(message)

    return endpoint


def _store() -> ConfigStore:
    return bottle.request.app.config['panoptes.store']


def _key_from(data):
    if data is None:
        return None
    if not isinstance(data, dict):
        raise _BadRequest('the request body must be a JSON object like {"key": "location.horizon"}')
    key = data.get('key')
    if key is not None and not isinstance(key, str):
        raise _BadRequest(f'"key" must be a string like "location.horizon" or null, '
                          f'not {type(key).__name__}')
    return key


@_json_endpoint
def get_config_entry():
    """Get config entries from server.

    Takes ``{"key": "location.elevation"}`` (by POST, or ``?key=`` in a GET)
    and answers the JSON of that entry: ``null`` for a missing key, the whole
    config for a null key.
    """
    data = _request_json()
    if data is None:
        return _store().get_json(bottle.request.query.get('key') or None)
    return _store().get_json(_key_from(data))


@_json_endpoint
def set_config_entry():
    """Sets an item in the config.

    Takes ``{"location.elevation": "1000 m"}`` (any number of dotted keys) and
    answers with a copy of the values set. ``{"config_server.running": false}``
    stops the server.
    """
    data = _request_json()
    if not isinstance(data, dict) or not data:
        raise _BadRequest('the request body must be a JSON object of settings like '
                          '{"location.horizon": "45 deg"}')
    updates = dict(data)
    running = updates.pop(RUNNING_KEY, None)
    if running is not None and not isinstance(running, bool):
        raise _BadRequest(f'{RUNNING_KEY} must be true or false, not {type(running).__name__}')
    done = _store().set(updates) if updates else {}
    if running is not None:
        done[RUNNING_KEY] = running
    if running is False:
        on_stop = bottle.request.app.config['panoptes.on_stop']
        if on_stop is not None:
            on_stop()
    return _to_json(done)


@_json_endpoint
def reset_config():
    """Reset the configuration.

    Takes ``{"reset": true}`` (and optionally ``"load_local": false``) and
    reloads the config files, answering ``{"success": true, "msg": ...}``.
    The manual's version always skipped the local files, so a restart later
    brought back values a reset had seemingly removed; this reloads the files
    as the server loaded them at start unless told otherwise.
    """
    data = _request_json()
    if not isinstance(data, dict) or data.get('reset') is not True:
        raise _BadRequest('send {"reset": true} to reload the config files')
    load_local = data.get('load_local')
    if load_local is not None and not isinstance(load_local, bool):
        raise _BadRequest(f'"load_local" must be true or false, not {type(load_local).__name__}')
    files, backup = _store().reset(load_local)
    answer = {'success': True, 'msg': f'Configuration reset from {", ".join(files)}'}
    if backup is not None:
        answer['backup'] = backup
        answer['msg'] += f'; the old local config is kept as {backup}'
    return json.dumps(answer)


@_json_endpoint
def heartbeat():
    """A simple echo service to be used for a heartbeat: ``true`` while running.

    A POST of ``{"key": ...}`` answers that config value instead.
    """
    key = _key_from(_request_json())
    if key is None or key == RUNNING_KEY:
        return 'true'
    return _store().get_json(key)


def _error_page(error) -> str:
    """Bottle's own errors (unknown path, wrong method) as JSON too."""
    bottle.response.content_type = 'application/json'
    return _failure(f'{error.status_line}: {error.body}')


def _log_sink(spec, stream_name: str):
    """Return a function writing one log line for ``'default'``, ``'logger'`` or a file, else None."""
    if spec is None:
        return None
    if spec == 'default':
        def write(line):
            stream = getattr(sys, stream_name)
            stream.write(line + '\n')
            stream.flush()
        return write
    if spec == 'logger':
        from panoptes_cli.logging import logger

        return logger.info if stream_name == 'stdout' else logger.error
    if hasattr(spec, 'write'):
        def write_file(line):
            spec.write(line + '\n')
            spec.flush()
        return write_file
    raise ValueError(f"bad log destination {spec!r}: use 'default', 'logger', a file or None")


def make_app(store: ConfigStore, on_stop=None, access_logs=None, error_logs='logger',
             guard: RequestGuard | None = None):
    """Return the bottle application serving ``store``.

    Args:
        store (ConfigStore): The config to serve.
        on_stop (callable, optional): Called when a client sets ``config_server.running`` to false.
        access_logs, error_logs: Where request lines and internal errors go, as in
            :func:`config_server`.
        guard (RequestGuard, optional): Which requests to answer; default: those
            of a server on 127.0.0.1:6563.
    """
    app = bottle.Bottle(catchall=True, autojson=False)
    app.config['panoptes.store'] = store
    app.config['panoptes.guard'] = guard or RequestGuard(DEFAULT_HOST, 6563)
    app.config['panoptes.on_stop'] = on_stop
    app.config['panoptes.error_log'] = _log_sink(error_logs, 'stderr')
    app.route('/get-config', ['GET', 'POST'], get_config_entry)
    app.route('/set-config', ['GET', 'POST'], set_config_entry)
    app.route('/reset-config', ['POST'], reset_config)
    app.route('/heartbeat', ['GET', 'POST'], heartbeat)
    for status in (400, 404, 405, 413, 500):
        app.error_handler[status] = _error_page
    access_log = _log_sink(access_logs, 'stdout')
    if access_log is not None:
        def log_request():
            request, response = bottle.request, bottle.response
            access_log(f'{request.remote_addr} "{request.method} {request.fullpath}" '
                       f'{response.status_code}')
        app.add_hook('after_request', log_request)
    return app


# --- Serving ----------------------------------------------------------------------------

def _bound_connections(server) -> None:
    """Make a waitress server close idle, slow and surplus connections (see CONNECTION_LIMIT)."""
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer

    class Channel(HTTPChannel):
        """A connection that another host may open only CONNECTIONS_PER_CLIENT of."""

        def __init__(self, server, sock, addr, adj, map=None):
            super().__init__(server, sock, addr, adj, map)
            client = addr[0] if isinstance(addr, tuple) else None
            if client is None or _is_loopback(client):
                return
            same_client = sum(1 for channel in list(server.active_channels.values())
                              if isinstance(channel.addr, tuple) and channel.addr[0] == client)
            if same_client > CONNECTIONS_PER_CLIENT:
                self.will_close = True

    def maintenance(listener, now):
        # waitress's own maintenance closes channels idle past channel_timeout;
        # this also closes those whose request has been arriving for too long.
        for channel in list(listener.active_channels.values()):
            request = channel.request
            if request is None or channel.requests:
                if not channel.requests and channel.last_activity < now - IDLE_TIMEOUT:
                    channel.will_close = True
                continue
            started = getattr(channel, 'panoptes_request_started', None)
            if started is None or started[0] is not request:
                channel.panoptes_request_started = (request, now)
            elif now - started[1] > REQUEST_READ_TIMEOUT:
                channel.will_close = True

    def readable(listener, original=None):
        if len(listener._map) >= CONNECTION_LIMIT:
            _close_idlest(listener)
        return original()

    listeners = ([server] if isinstance(server, BaseWSGIServer) else
                 [item for item in server.map.values() if isinstance(item, BaseWSGIServer)])
    for listener in listeners:
        listener.channel_class = Channel
        listener.maintenance = functools.partial(maintenance, listener)
        listener.readable = functools.partial(readable, listener, original=listener.readable)


def _close_idlest(listener) -> None:
    """Close the longest-idle connections not being answered, a tenth of the limit at a time."""
    idle = [channel for channel in listener.active_channels.values()
            if not channel.requests and not channel.will_close]
    idle.sort(key=lambda channel: channel.last_activity)
    surplus = len(listener._map) - CONNECTION_LIMIT + CONNECTION_LIMIT // 10
    for channel in idle[:surplus]:
        channel.will_close = True


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition('%')[0]).is_loopback
    except ValueError:
        return False


def _allow_enough_files() -> None:
    """Raise this process's open-file limit so CONNECTION_LIMIT connections fit in it."""
    import resource

    needed = CONNECTION_LIMIT + CONNECTION_LIMIT // 5 + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _raise_system_exit(signum, frame):
    # waitress stops its loop cleanly on SystemExit: requests in hand finish first.
    raise SystemExit(0)


class ConfigServer:
    """A config server bound to its address, ready to :meth:`run` in the foreground.

    Creating it loads the config and starts listening, so every reason it
    could not serve (a bad file, the port in use) is raised here.

    Args:
        config_file (str or list, optional): The config file(s); default
            ``$PANOPTES_CONFIG_FILE``, else the bundled default unit config.
        host (str, optional): Address to listen on; default ``$PANOPTES_CONFIG_HOST``,
            else 127.0.0.1 (``0.0.0.0`` serves the network).
        port (int, optional): Port; default ``$PANOPTES_CONFIG_PORT``, else 6563.
            0 picks a free one (see :attr:`port`).
        load_local (bool): Merge ``<stem>_local.yaml`` files, default True.
        save_local (bool): Save every set to the local file before answering, default False.
        access_logs, error_logs: As for :func:`config_server`.
        allow_hosts (list of str, optional): More names clients may reach the
            server by (``Host`` headers), besides loopback names and addresses
            and ``host``; see :class:`RequestGuard`.
    """

    def __init__(self, config_file=None, host=None, port=None, load_local=True, save_local=False,
                 access_logs=None, error_logs='logger', allow_hosts=()):
        import waitress

        self.store = ConfigStore(config_file or default_config_file(), load_local, save_local)
        host, port = server_address(host, port, default_host=DEFAULT_HOST)
        self.allow_hosts = list(allow_hosts or ())
        guard = RequestGuard(host, port, self.allow_hosts)
        app = make_app(self.store, self.stop, access_logs, error_logs, guard)
        threads = SAVING_THREADS if save_local else THREADS
        _allow_enough_files()
        try:
            self._server = waitress.create_server(
                app, host=host, port=port, threads=threads, ident='panoptes-config-server',
                asyncore_use_poll=True, max_request_body_size=WAITRESS_MAX_BODY_BYTES,
                clear_untrusted_proxy_headers=True,
                connection_limit=CONNECTION_LIMIT + CONNECTION_LIMIT // 5,
                channel_timeout=IDLE_TIMEOUT, cleanup_interval=CLEANUP_INTERVAL)
        except OSError as err:
            reason = err.strerror or str(err)
            raise BadConnection(f'config server cannot listen on {config_url(host, port)[7:]}: '
                                f'{reason}; is another server running there? Stop it with '
                                "'panoptes config stop' or choose another --port") from None
        _bound_connections(self._server)
        self.host = host
        self.port = self._bound_port()
        guard.port = self.port
        self.url = config_url(host, self.port)
        self._running = False
        # Busy clients make waitress warn about its queue depth; that is not news.
        logging.getLogger('waitress.queue').setLevel(logging.ERROR)

    def _bound_port(self) -> int:
        listening = getattr(self._server, 'effective_port', None)
        if listening is None:
            listening = self._server.effective_listen[0][1]
        return int(listening)

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (or a client stops it); must run in the main thread.

        Requests in hand are finished before it returns.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError('ConfigServer.run() needs the main thread (for its signals); '
                               'use config_server() for a server in the background')
        previous = {signum: signal.signal(signum, _raise_system_exit)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        # What is loaded now (astropy, and under fork the parent's whole heap)
        # lives as long as the server: keep the garbage collector off it.
        gc.freeze()
        self._running = True
        try:
            self._server.run()
        except (SystemExit, KeyboardInterrupt):
            pass
        finally:
            self._running = False
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._server.close()

    def stop(self, delay: float = 0.2) -> None:
        """Stop a running server from any thread, after ``delay`` s (to let the current answer go out)."""
        def stop_now():
            if self._running:
                os.kill(os.getpid(), signal.SIGTERM)

        timer = threading.Timer(delay, stop_now)
        timer.daemon = True
        timer.start()


def _serve_in_process(connection, options: dict) -> None:
    """The config server process: report ready (or why not) to the parent, if it waits, then serve."""
    try:
        server = ConfigServer(**options)
    except BaseException as err:  # noqa: BLE001 - every reason goes back to the parent
        if connection is not None:
            try:
                connection.send(('error', err))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                connection.send(('error', PanError(f'{type(err).__name__}: {err}')))
            connection.close()
        sys.exit(1)
    if connection is not None:
        connection.send(('ready', (server.host, server.port)))
        connection.close()
    server.run()


def config_server(config_file=None, host=None, port=None, load_local=True, save_local=False,
                  auto_start=True, access_logs=None, error_logs='logger', allow_hosts=()):
    """Run a config server in a child process.

    Returns once the server accepts connections; if it cannot start (a bad
    config file, the port in use) the reason is raised here instead of the
    process dying quietly. The returned process has ``host``, ``port`` and
    ``url`` attributes; ``terminate()`` stops the server cleanly (it is a
    daemon process, so it also stops when this program exits).

    >>> from panoptes_cli.config.server import config_server
    >>> from panoptes_cli.config import client
    >>> server_process = config_server(default_config_file(), host='127.0.0.1', port=0,
    ...                                load_local=False)
    >>> client.get_config('location.horizon', port=server_process.port)
    <Quantity 30. deg>
    >>> server_process.terminate()  # Or just exit notebook/console
    >>> server_process.join()
    >>> server_process.exitcode
    0

    Args:
        config_file (str or None): The config file to load; default
            ``$PANOPTES_CONFIG_FILE``, else the default unit config bundled with
            panoptes-cli (the manual required one, yet its own example passed none).
        host (str, optional): The address to listen on. First checks for
            PANOPTES_CONFIG_HOST env var, defaults to 127.0.0.1 (loopback only).
        port (str or int, optional): The port. First checks for PANOPTES_CONFIG_PORT
            env var, defaults to 6563; 0 picks a free port.
        load_local (bool, optional): Merge the ``_local`` files over the config, default True.
        save_local (bool, optional): Save each set's changes to the ``_local`` file, default False.
        auto_start (bool, optional): Start the process and wait until it serves,
            default True. Otherwise the caller starts it (and can wait for
            :func:`panoptes_cli.config.client.server_is_running`).
        access_logs ('default' or 'logger' or File-like or None, optional): Where
            to log one line per request: 'default' is stdout, 'logger' the
            panoptes logger, a file-like writes there; None (default) turns them off.
        error_logs ('default' or 'logger' or File-like or None, optional): Same as
            ``access_logs`` for internal errors ('default' is stderr); default 'logger'.
        allow_hosts (list of str, optional): More names clients reach the server
            by, as ``Host`` headers; loopback names and addresses and ``host``
            are always allowed (see :class:`RequestGuard`).

    Returns:
        multiprocessing.Process: the child, with ``host``, ``port`` and ``url``.

    Raises:
        InvalidConfig: If the config file is missing or invalid (naming file and line).
        BadConnection: If the server cannot listen (e.g. the port is in use).
    """
    options = {'config_file': config_file, 'host': host, 'port': port, 'load_local': load_local,
               'save_local': save_local, 'access_logs': access_logs, 'error_logs': error_logs,
               'allow_hosts': list(allow_hosts or ())}
    receiver, sender = multiprocessing.Pipe(duplex=False) if auto_start else (None, None)
    process = multiprocessing.Process(target=_serve_in_process, args=(sender, options),
                                      name='panoptes-config-server', daemon=True)
    process.host, process.port = server_address(host, port, default_host=DEFAULT_HOST)
    process.url = config_url(process.host, process.port)
    if not auto_start:
        return process
    process.start()
    sender.close()
    ready = multiprocessing.connection.wait([receiver, process.sentinel], timeout=STARTUP_TIMEOUT)
    try:
        status, payload = receiver.recv() if receiver in ready or receiver.poll() else (None, None)
    except EOFError:
        status, payload = None, None
    finally:
        receiver.close()
    if status == 'ready':
        process.host, process.port = payload
        process.url = config_url(process.host, process.port)
        return process
    if process.is_alive():
        process.terminate()
    process.join(5)
    if status == 'error':
        raise payload
    raise BadConnection(f'config server at {process.url}: did not start within '
                        f'{STARTUP_TIMEOUT:g} s (exit code {process.exitcode})')
