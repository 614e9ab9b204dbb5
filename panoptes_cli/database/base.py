"""The database interface every PANOPTES store shares, and the ``PanDB`` factory.

A record is ``{"_id", "type", "date", "data"}``: the id (a UUID string unless
the caller gave one), the collection it belongs to, when it was stored (UTC,
ISO-8601 with milliseconds) and the caller's data. Every backend keeps records
as one line of JSON, so they all read back the same way.

>>> from panoptes_cli.database import PanDB
>>> db = PanDB(db_type='memory', db_name='doctest_base')
>>> record_id = db.insert_current('weather', {'temp': 12.5, 'safe': True})
>>> db.get_current('weather')['data']
{'temp': 12.5, 'safe': True}
>>> db.find('weather', record_id)['_id'] == record_id
True
>>> [r['data']['temp'] for r in db.find('weather', where={'safe': True})]
[12.5]
>>> PanDB.permanently_erase_database('memory', 'doctest_base', really='Yes', dangerous='Totally')
"""

import abc
import importlib
import json
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime as _datetime
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

# DatabaseError lives in error.py with the other errors; importable from here as before.
from panoptes_cli.error import DatabaseError, IllegalValue, InvalidSerialization  # noqa: F401
from panoptes_cli.serializers import deserialize_all_objects, serialize_object, to_json
from panoptes_cli.time import utc_now

# Letters, digits, underscore, hyphen and dot: safe as a file name on every system.
_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,200}$')
# What record dates look like once normalised: sortable as plain strings.
_ISO_MS = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$')
_RELATIVE_TIME = re.compile(r'^\s*(\d+(?:\.\d*)?)\s*([smhdw])\s*$')
_TIME_UNITS = {'s': 'seconds', 'm': 'minutes', 'h': 'hours', 'd': 'days', 'w': 'weeks'}
_RECORD_KEYS = frozenset(('_id', 'type', 'date', 'data'))
_DB_CLASSES = {'file': 'PanFileDB', 'memory': 'PanMemoryDB', 'sqlite': 'PanSQLiteDB'}

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
    """
    if not isinstance(name, str) or not _NAME.match(name) or name in ('.', '..'):
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


def create_storage_obj(collection, data, obj_id):
    """Wrap the data in a dict along with the id and a timestamp.

    >>> import os
    >>> os.environ['POCSTIME'] = '1999-12-31 23:59:59'
    >>> create_storage_obj('weather', {'temp': 12.5}, 'abc')
    {'_id': 'abc', 'type': 'weather', 'date': datetime.datetime(1999, 12, 31, 23, 59, 59), 'data': {'temp': 12.5}}
    >>> del os.environ['POCSTIME']
    """
    return {'_id': obj_id, 'type': collection, 'date': utc_now(), 'data': data}


def get_db_class(module_name='file'):
    """Load the main DB class for the module of the given name.

    This is used by the ``PanDB`` constructor to determine the correct
    database type. Normal DB instantiation should be done via ``PanDB()``
    with the desired ``db_type`` parameter set.

    >>> get_db_class('sqlite').__name__
    'PanSQLiteDB'
    >>> get_db_class('mongo')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: unsupported database type 'mongo': use file, memory or sqlite

    Args:
        module_name (str): Name of module, one of: ``file`` (default),
            ``memory`` or ``sqlite``.

    Returns:
        type: The db class for the database type.

    Raises:
        panoptes_cli.error.IllegalValue: If an unsupported database type is passed.
    """
    if module_name not in _DB_CLASSES:
        raise IllegalValue(f'unsupported database type {module_name!r}: use file, memory or sqlite')
    # Not library.load_module: its ctypes import would slow every db command.
    module = importlib.import_module(f'panoptes_cli.database.{module_name}')
    return getattr(module, _DB_CLASSES[module_name])


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
    if isinstance(value, str) and _ISO_MS.match(value):
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
    """
    if isinstance(value, str):
        relative = _RELATIVE_TIME.match(value)
        if relative:
            amount = timedelta(**{_TIME_UNITS[relative[2]]: float(relative[1])})
            return iso_date(utc_now() - amount)
    try:
        return iso_date(value)
    except IllegalValue:
        raise IllegalValue(f'{value!r} is not a time: use ISO-8601 (2024-05-01T22:00:00) '
                           'or a duration before now (90s, 15m, 2h, 7d, 1w)') from None


def parse_scalar(text: str):
    """Read a ``--where`` value as JSON or YAML reads a scalar; anything else stays a string.

    >>> [parse_scalar(v) for v in ('12.5', '3', 'true', 'False', 'null', '~', 'dry', '"12.5"')]
    [12.5, 3, True, False, None, None, 'dry', '12.5']
    """
    lowered = text.strip().lower()
    if lowered in ('true', 'false'):
        return lowered == 'true'
    if lowered in ('null', '~', ''):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (bool, int, float, str)) else text


def parse_condition(text: str) -> tuple[str, object]:
    """Split a ``KEY=VALUE`` condition on a data field into the key and its parsed value.

    >>> parse_condition('wind.speed=3')
    ('wind.speed', 3)
    >>> parse_condition('temp')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: invalid condition 'temp': use KEY=VALUE, e.g. temp=12.5
    """
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise IllegalValue(f'invalid condition {text!r}: use KEY=VALUE, e.g. temp=12.5')
    return key.strip(), parse_scalar(value)


def _conditions(where) -> list[tuple[list[str], object]]:
    """Turn ``where`` (a dict, or ``KEY=VALUE`` strings) into (key path, value) pairs."""
    if not where:
        return []
    if isinstance(where, str):
        where = [where]
    items = where.items() if isinstance(where, dict) else (parse_condition(w) for w in where)
    conditions = []
    for key, value in items:
        path = str(key).split('.')
        if not all(path):
            raise IllegalValue(f'invalid field {key!r}: use a name like temp or wind.speed')
        conditions.append((path, value))
    return conditions


def _equal(stored, expected) -> bool:
    # True must not match 1, nor 1 match True: JSON keeps them apart.
    if isinstance(stored, bool) or isinstance(expected, bool):
        return isinstance(stored, bool) and isinstance(expected, bool) and stored == expected
    return stored == expected


def _matches(record: dict, conditions) -> bool:
    for path, expected in conditions:
        value = record.get('data')
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        if not _equal(value, expected):
            return False
    return True


class PreparedRecord(NamedTuple):
    """A record ready to store: its id, its date and its JSON line."""

    id: str
    date: str
    text: str


def _is_record(obj) -> bool:
    return isinstance(obj, dict) and {'type', 'date', 'data'} <= obj.keys() <= _RECORD_KEYS


def prepare_record(collection: str, obj, data_json: str | None = None) -> PreparedRecord:
    """Wrap ``obj`` as a record of ``collection`` and serialize it, or raise.

    A dict that already is a record (it has ``type``, ``date`` and ``data``
    and nothing else but ``_id``) is not wrapped again: its id (if any), date
    and data are kept and its type becomes ``collection``.

    >>> import json
    >>> prepared = prepare_record('weather', {'temp': 12.5})
    >>> sorted(json.loads(prepared.text))
    ['_id', 'data', 'date', 'type']
    >>> again = prepare_record('weather', json.loads(prepared.text))
    >>> again == prepared
    True
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


class AbstractPanDB(metaclass=abc.ABCMeta):
    """The interface of every store: insert, find, the current record per collection.

    Subclasses store records as JSON lines; this class wraps, validates and
    queries them the same way for every backend.
    """

    def __init__(self, db_name=None, **kwargs):
        """Init base class for db instances.

        Args:
            db_name: Name of the database, typically 'panoptes' or 'panoptes_testing'.
        """
        self.db_name = validate_name(db_name, 'database') if db_name is not None else None

    # What each backend provides.

    @abc.abstractmethod
    def _store(self, collection: str, records: list[PreparedRecord],
               current: PreparedRecord | None = None) -> None:
        """Store ``records`` in ``collection`` and ``current`` (if given) as its current one."""

    @abc.abstractmethod
    def _find_record(self, collection: str, obj_id: str) -> dict | None:
        """Return the first record stored with ``obj_id`` (as JSON decoded it), or None."""

    @abc.abstractmethod
    def _scan(self, collection: str, since: str | None, until: str | None,
              limit: int | None) -> Iterator[dict]:
        """Yield the records dated in [since, until) (as JSON decoded them), newest first."""

    @abc.abstractmethod
    def _current_record(self, collection: str) -> dict | None:
        """Return the current record of ``collection`` (as JSON decoded it), or None."""

    @abc.abstractmethod
    def _clear(self, collection: str) -> None:
        """Forget the current record of ``collection``."""

    # The documented interface.

    def insert_current(self, collection, obj, store_permanently=True) -> str:
        """Insert an object into both the *current* collection and the collection provided.

        The same record, with the same id, becomes the current one and (when
        ``store_permanently``) joins the collection. (panoptes-utils 0.2.29's
        file store wrapped it a second time under another id.)

        Args:
            collection (str): Name of valid collection within the db.
            obj (dict or str): Object to be inserted.
            store_permanently (bool): Whether to also update the collection,
                defaults to True.

        Returns:
            str: identifier of the inserted record.

        Raises:
            panoptes_cli.error.InvalidSerialization: If ``obj`` cannot be written
                as JSON; nothing is stored then.
        """
        record = prepare_record(validate_name(collection), obj)
        self._store(collection, [record] if store_permanently else [], current=record)
        return record.id

    def insert(self, collection, obj) -> str:
        """Insert an object into the collection provided.

        The ``obj`` to be stored in a collection should include the ``type``
        and ``date`` metadata as well as a ``data`` key that contains the actual
        object data. If these keys are not provided then ``obj`` will be wrapped
        in a corresponding object that does contain the metadata.

        Args:
            collection (str): Name of valid collection within the db.
            obj (dict or str): Object to be inserted.

        Returns:
            str: identifier of inserted record in ``collection``.

        Raises:
            panoptes_cli.error.InvalidSerialization: If ``obj`` cannot be written
                as JSON; nothing is stored then.
        """
        record = prepare_record(validate_name(collection), obj)
        self._store(collection, [record])
        return record.id

    def insert_many(self, collection, objs: Iterable, current: bool = False) -> list[str]:
        """Insert several objects at once (one transaction where the store has them).

        Every object is checked before anything is written: one that cannot be
        serialized raises and nothing is stored. Already prepared records
        (:func:`prepare_record`) are taken as they are.

        Args:
            collection (str): Name of valid collection within the db.
            objs (iterable): Objects (or prepared records) to insert, in order.
            current (bool): Also make the last one the current record.

        Returns:
            list[str]: The identifiers, in order.
        """
        validate_name(collection)
        records = [obj if isinstance(obj, PreparedRecord) else prepare_record(collection, obj)
                   for obj in objs]
        if records:
            self._store(collection, records, current=records[-1] if current else None)
        return [record.id for record in records]

    def get_current(self, collection, *, parse=True):
        """Returns the most current record for the given collection

        Args:
            collection (str): Name of the collection to get most current from
            parse (bool): Turn quantity strings and ISO times into Quantities
                and datetimes (default), or leave the record as stored.

        Returns:
            dict|None: Current object of the collection or None.
        """
        record = self._current_record(validate_name(collection))
        if record is None or not parse:
            return record
        return deserialize_all_objects(record)

    def find(self, collection, obj_id=None, *, since=None, until=None, where=None,
             limit=None, parse=True):
        """Find an object by it's identifier, or the records matching a query.

        With ``obj_id``, return that record (dict) or None, as documented.
        Without, return a generator of the matching records, newest first.

        Args:
            collection (str): Collection to search for object.
            obj_id (str, optional): Record identifier returned earlier by insert
                or insert_current.
            since: Only records dated at or after this time (ISO-8601 string,
                datetime, astropy Time, or a duration before now like ``2h``).
            until: Only records dated before this time (same forms).
            where (dict or list[str]): Equality on fields of ``data``: a dict
                like ``{'temp': 12.5, 'wind.speed': 3}`` or ``KEY=VALUE``
                strings; a dotted key reaches into nested dicts.
            limit (int, optional): At most this many records.
            parse (bool): Turn quantity strings and ISO times in the records
                into Quantities and datetimes (default), or leave them as
                stored.

        Returns:
            dict|None, or a generator of dicts.
        """
        validate_name(collection)
        since = None if since is None else parse_time_bound(since)
        until = None if until is None else parse_time_bound(until)
        conditions = _conditions(where)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise IllegalValue(f'invalid limit {limit!r}: use a whole number >= 0')
        if obj_id is not None:
            record = self._find_record(collection, str(obj_id))
            if record is None or not self._wanted(record, since, until, conditions):
                return None
            return deserialize_all_objects(record) if parse else record
        return self._query(collection, since, until, conditions, limit, parse)

    def clear_current(self, type):
        """Clear the current record of a certain type

        Args:
            type (str): The type of entry in the current collection that
                should be cleared.
        """
        self._clear(validate_name(type))

    # Shared machinery.

    @staticmethod
    def _wanted(record: dict, since, until, conditions) -> bool:
        if since is not None or until is not None:
            date = record_date(record)
            if (since is not None and date < since) or (until is not None and date >= until):
                return False
        return _matches(record, conditions)

    def _query(self, collection, since, until, conditions, limit, parse) -> Iterator[dict]:
        if limit == 0:
            return
        found = 0
        # Fields of data are compared here, the same way for every backend.
        for record in self._scan(collection, since, until, None if conditions else limit):
            if conditions and not _matches(record, conditions):
                continue
            yield deserialize_all_objects(record) if parse else record
            found += 1
            if found == limit:
                return


class PanDB:
    """Simple class to load the appropriate DB type based on the config.

    We don't actually create instances of this class, but instead create
    an instance of the 'correct' type of db. ``db_name`` is passed on to it
    (panoptes-utils 0.2.29 dropped it, so every store was named 'panoptes').

    >>> import os, tempfile
    >>> from unittest import mock
    >>> scratch = tempfile.TemporaryDirectory()
    >>> _ = mock.patch.dict(os.environ, PANDIR=scratch.name).start()  # a scratch $PANDIR
    >>> from panoptes_cli.database import PanDB
    >>> type(PanDB(db_type='file'))
    <class 'panoptes_cli.database.file.PanFileDB'>
    >>> type(PanDB('memory'))
    <class 'panoptes_cli.database.memory.PanMemoryDB'>
    >>> PanDB(db_type='sqlite', db_name='panoptes_testing').db_name
    'panoptes_testing'

    >>> # Make a new instance of the db.
    >>> memory_db = PanDB(db_type='memory')
    >>> # Returns None if no record.
    >>> memory_db.get_current('safety')

    >>> insert_id = memory_db.insert_current('safety', True)
    >>> record = memory_db.get_current('safety')
    >>> record['data']
    True
    >>> mock.patch.stopall(); scratch.cleanup()
    """

    def __new__(cls, db_type='memory', db_name=None, *args, **kwargs):
        """Create an instance based on db_type."""
        db_class = get_db_class(db_type)
        if db_name is not None:
            kwargs['db_name'] = db_name
        if db_type == 'memory':
            return db_class.get_or_create(**kwargs)
        return db_class(**kwargs)

    @classmethod
    def permanently_erase_database(cls, db_type, db_name, storage_dir=None, really=False,
                                   dangerous=False, *args, **kwargs):
        """Permanently delete the contents of the identified database.

        Only for test databases: ``db_name`` must contain ``test``, and the
        call must say ``really='Yes', dangerous='Totally'``.

        >>> PanDB.permanently_erase_database('file', 'panoptes', really='Yes', dangerous='Totally')
        Traceback (most recent call last):
          ...
        panoptes_cli.error.IllegalValue: IllegalValue: permanently_erase_database() called for non-test database 'panoptes'

        Raises:
            panoptes_cli.error.IllegalValue: If a guard is not satisfied.
        """
        if not isinstance(db_name, str) or 'test' not in db_name:
            raise IllegalValue(f'permanently_erase_database() called for non-test database {db_name!r}')
        if really != 'Yes' or dangerous != 'Totally':
            raise IllegalValue('PanDB.permanently_erase_database called with invalid args: '
                               "pass really='Yes' and dangerous='Totally'")
        validate_name(db_name, 'database')
        if storage_dir is not None:
            kwargs['storage_dir'] = storage_dir
        get_db_class(db_type).permanently_erase_database(db_name, *args, **kwargs)
