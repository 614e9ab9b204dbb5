"""Names, ids, dates and records as every store writes them.

A record is ``{"_id", "type", "date", "data"}``; :func:`prepare_record` turns
what a caller inserts into one, serialized once, for any backend to store.

>>> prepared = prepare_record('weather', {'temp': 12.5})
>>> prepared.text.startswith('{"_id": ')
True
>>> iso_date(prepared.date) == prepared.date
True
"""

import json
import os
import random
import re
import time
from datetime import datetime as _datetime
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from panoptes_cli.error import IllegalValue, InvalidSerialization
from panoptes_cli.serializers import serialize_object, to_json
from panoptes_cli.time import utc_now

# Letters, digits, underscore, hyphen and dot: safe as a file name on every system.
_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,200}$')
# What record dates look like once normalised: sortable as plain strings.
_ISO_MS = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$')
_RELATIVE_TIME = re.compile(r'^\s*(\d+(?:\.\d*)?)\s*([smhdw])\s*$')
_TIME_UNITS = {'s': 'seconds', 'm': 'minutes', 'h': 'hours', 'd': 'days', 'w': 'weeks'}
# 'unit': the unit a record came from, in a fleet's PostgreSQL store (not kept elsewhere).
_RECORD_KEYS = frozenset(('_id', 'type', 'date', 'data', 'unit'))

# Random bits for ids: our own generator, so code seeding the global one
# (tests, simulations) cannot repeat ids, reseeded in forked children so they
# do not repeat their parent's.
_id_random = random.Random()
_random_bits = _id_random.getrandbits
os.register_at_fork(after_in_child=_id_random.seed)


def storage_root() -> Path:
    """Return the directory stores live under: ``$PANDIR``, else the per-user data directory.

    The per-user directory is ``$XDG_DATA_HOME/panoptes``, or
    ``~/.local/share/panoptes`` when ``XDG_DATA_HOME`` is not set.

    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, PANDIR='/var/panoptes'):
    ...     storage_root()
    PosixPath('/var/panoptes')
    >>> with mock.patch.dict(os.environ, PANDIR='', XDG_DATA_HOME='/home/pan/.data'):
    ...     storage_root()
    PosixPath('/home/pan/.data/panoptes')
    """
    pandir = os.environ.get('PANDIR')
    if pandir:
        return Path(pandir)
    xdg = os.environ.get('XDG_DATA_HOME', '')
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / '.local' / 'share'
    return base / 'panoptes'


def validate_name(name, what: str = 'collection') -> str:
    """Return ``name`` if it is a safe collection or database name, else raise IllegalValue.

    Names are 1 to 200 letters, digits, ``_``, ``-`` and ``.``, and not ``.``
    or ``..``, so a name can never point outside its store.

    >>> validate_name('weather')
    'weather'
    >>> validate_name('../../etc/passwd')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: invalid collection name '../../etc/passwd': use 1-200 letters, digits, '_', '-' or '.'
    >>> validate_name('weather\\n')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: invalid collection name 'weather\\n': use 1-200 letters, digits, '_', '-' or '.'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in ('.', '..'):
        raise IllegalValue(f"invalid {what} name {name!r}: use 1-200 letters, digits, '_', '-' or '.'")
    if what == 'collection' and name.startswith('current_'):
        # The file store keeps the current record of "weather" in current_weather.json.
        raise IllegalValue(f"invalid collection name {name!r}: names starting with 'current_' "
                           'are reserved for the current records')
    return name


def new_id() -> str:
    """Return a new record id: a version 7 UUID (RFC 9562), which sorts by creation time.

    Time-ordered ids keep the id index of a large store compact and quick to
    update, where random (version 4) ids touch a different page per record.

    >>> from uuid import UUID
    >>> UUID(new_id()).version
    7
    >>> new_id() != new_id()
    True
    """
    value = (time.time_ns() // 1_000_000) << 80 | _random_bits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # the version
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC 4122 variant
    digits = f'{value:032x}'
    return f'{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}'


def iso_date(value) -> str:
    """Return a time (datetime, date, astropy Time or ISO string) as a record date string.

    Naive times are taken as UTC; others are converted to UTC.

    >>> from datetime import datetime
    >>> iso_date(datetime(2024, 5, 1, 3, 4, 5, 678901))
    '2024-05-01T03:04:05.678'
    >>> iso_date('2024-05-01 05:04:05+02:00')
    '2024-05-01T03:04:05.000'
    >>> iso_date('yesterday')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: 'yesterday' is not an ISO-8601 time
    """
    if isinstance(value, str) and _ISO_MS.fullmatch(value):
        return value
    # Datetimes, dates and astropy Times become ISO strings here.
    value = serialize_object(value)
    try:
        moment = _datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise IllegalValue(f'{value!r} is not an ISO-8601 time') from None
    # A datetime serializes as a naive UTC time with milliseconds: the record date form.
    return serialize_object(moment)


def parse_time_bound(value) -> str:
    """Return a ``since``/``until`` bound as a record date string.

    Takes what :func:`iso_date` takes, and also a duration before now:
    ``90s``, ``15m``, ``2h``, ``7d``, ``1w``.

    >>> parse_time_bound('2024-05-01')
    '2024-05-01T00:00:00.000'
    >>> import os
    >>> os.environ['POCSTIME'] = '2024-05-01 12:00:00'
    >>> parse_time_bound('2h')
    '2024-05-01T10:00:00.000'
    >>> del os.environ['POCSTIME']
    >>> parse_time_bound('999999999d')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: '999999999d' reaches back before the year 1; give a shorter duration or an ISO-8601 time
    """
    if isinstance(value, str):
        relative = _RELATIVE_TIME.match(value)
        if relative:
            try:
                amount = timedelta(**{_TIME_UNITS[relative[2]]: float(relative[1])})
                return iso_date(utc_now() - amount)
            except OverflowError:
                raise IllegalValue(f'{value!r} reaches back before the year 1; give a shorter '
                                   'duration or an ISO-8601 time') from None
    try:
        return iso_date(value)
    except IllegalValue:
        raise IllegalValue(f'{value!r} is not a time: use ISO-8601 (2024-05-01T22:00:00) '
                           'or a duration before now (90s, 15m, 2h, 7d, 1w)') from None


class PreparedRecord(NamedTuple):
    """A record ready to store: its id, its date and its JSON line."""

    id: str
    date: str
    text: str


def _is_record(obj) -> bool:
    return isinstance(obj, dict) and {'type', 'date', 'data'} <= obj.keys() <= _RECORD_KEYS


def _is_serial_reading(obj) -> bool:
    """A line of `panoptes serial listen` (parsed): its ``data`` is the reading."""
    return (isinstance(obj, dict) and obj.keys() == {'timestamp', 'port', 'data'}
            and isinstance(obj['data'], dict))


def prepare_record(collection: str, obj, data_json: str | None = None) -> PreparedRecord:
    """Wrap ``obj`` as a record of ``collection`` and serialize it, or raise.

    A dict that already is a record (it has ``type``, ``date`` and ``data``
    and nothing else but ``_id``) is not wrapped again: its id (if any), date
    and data are kept and its type becomes ``collection``. A reading printed by
    ``panoptes serial listen`` (``timestamp``, ``port``, ``data``) is stored as
    its ``data``, dated by its ``timestamp``.

    >>> import json
    >>> prepared = prepare_record('weather', {'temp': 12.5})
    >>> sorted(json.loads(prepared.text))
    ['_id', 'data', 'date', 'type']
    >>> again = prepare_record('weather', json.loads(prepared.text))
    >>> again == prepared
    True
    >>> reading = {'timestamp': '2026-11-29T02:00:00.000', 'port': '/dev/ttyACM0',
    ...            'data': {'temp': 3.5}}
    >>> stored = json.loads(prepare_record('weather', reading).text)
    >>> stored['date'], stored['data']
    ('2026-11-29T02:00:00.000', {'temp': 3.5})
    >>> prepare_record('weather', {'when': object()})
    Traceback (most recent call last):
      ...
    panoptes_cli.error.InvalidSerialization: InvalidSerialization: cannot store a weather record: cannot serialize 'data.when' to JSON: Object of type object is not JSON serializable

    Args:
        collection (str): The (valid) collection name.
        obj: The data, or a record.
        data_json (str, optional): ``obj`` as one line of JSON, when the
            caller has it (read from NDJSON): it is stored as it is, which
            saves encoding it again and keeps numbers exactly as written.

    Raises:
        panoptes_cli.error.InvalidSerialization: If the data cannot be written as JSON.
        panoptes_cli.error.IllegalValue: If a record's ``_id`` or ``date`` is unusable.
    """
    if _is_record(obj):
        obj_id = obj.get('_id')
        if obj_id is None:
            obj_id = new_id()
        elif not isinstance(obj_id, str) or not obj_id:
            raise IllegalValue(f'cannot store a {collection} record: _id must be a non-empty '
                               f'string, not {obj_id!r}')
        date = iso_date(obj['date'])
        data = obj['data']
        data_json = None
    elif _is_serial_reading(obj):
        obj_id = new_id()
        date = iso_date(obj['timestamp'])
        data = obj['data']
        data_json = None
    else:
        obj_id = new_id()
        date = utc_now().isoformat(timespec='milliseconds')
        data = obj
    if data_json is None:
        try:
            text = to_json({'_id': obj_id, 'type': collection, 'date': date, 'data': data})
        except InvalidSerialization as err:
            raise InvalidSerialization(f'cannot store a {collection} record: {err.msg}') from None
    else:
        # The same text to_json would write; names and dates need no escaping.
        text = (f'{{"_id": {json.dumps(obj_id)}, "type": "{collection}", "date": "{date}", '
                f'"data": {data_json}}}')
    return PreparedRecord(obj_id, date, text)


def record_date(record: dict) -> str:
    """Return a stored record's date as a sortable string ('' if it has none)."""
    date = record.get('date')
    if isinstance(date, str) and _ISO_MS.match(date):
        return date
    try:
        return iso_date(date)
    except IllegalValue:
        return ''


def data_text(obj_id: str, collection: str, date: str, text: str) -> str:
    """Return the JSON text of a stored record's data, cut from the record's line.

    Lines written by :func:`prepare_record` are cut without parsing; any other
    line is parsed and its data written again.

    >>> line = prepare_record('weather', {'temp': 12.5}).text
    >>> record = json.loads(line)
    >>> data_text(record['_id'], 'weather', record['date'], line)
    '{"temp": 12.5}'
    """
    head = f'{{"_id": {json.dumps(obj_id)}, "type": "{collection}", "date": "{date}", "data": '
    if text.startswith(head) and text.endswith('}'):
        return text[len(head):-1]
    return to_json(json.loads(text)['data'])

