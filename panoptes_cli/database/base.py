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
from collections.abc import Iterable, Iterator

from panoptes_cli.database.query import Condition, matches, parse_where
from panoptes_cli.database.records import (
    PreparedRecord,
    parse_time_bound,
    prepare_record,
    record_date,
    validate_name,
)
# DatabaseError lives in error.py with the other errors; importable from here as before.
from panoptes_cli.error import DatabaseError, IllegalValue, NotSupported  # noqa: F401
from panoptes_cli.serializers import deserialize_all_objects
from panoptes_cli.time import utc_now

_DB_CLASSES = {'file': 'PanFileDB', 'memory': 'PanMemoryDB', 'postgres': 'PanPostgresDB',
               'sqlite': 'PanSQLiteDB'}


def create_storage_obj(collection, data, obj_id):
    """Return the stored form of a record: its id, collection, UTC date and data.

    >>> import os
    >>> os.environ['POCSTIME'] = '1999-12-31 23:59:59'
    >>> create_storage_obj('weather', {'temp': 12.5}, 'abc')
    {'_id': 'abc', 'type': 'weather', 'date': datetime.datetime(1999, 12, 31, 23, 59, 59), 'data': {'temp': 12.5}}
    >>> del os.environ['POCSTIME']
    """
    return {'_id': obj_id, 'type': collection, 'date': utc_now(), 'data': data}


def get_db_class(module_name='file'):
    """Return the store class for a ``db_type`` ('file', 'memory', 'sqlite', 'postgres').

    ``PanDB`` calls it; code that wants a store asks ``PanDB(db_type=...)`` rather
    than this.

    >>> get_db_class('sqlite').__name__
    'PanSQLiteDB'
    >>> get_db_class('mongo')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: unsupported database type 'mongo': use file, memory, postgres or sqlite

    Args:
        module_name (str): Name of module, one of: ``file`` (default),
            ``memory``, ``postgres`` or ``sqlite``.

    Returns:
        type: The db class for the database type.

    Raises:
        panoptes_cli.error.IllegalValue: If an unsupported database type is passed.
    """
    if module_name not in _DB_CLASSES:
        raise IllegalValue(f'unsupported database type {module_name!r}: '
                           'use file, memory, postgres or sqlite')
    # Not library.load_module: its ctypes import would slow every db command.
    module = importlib.import_module(f'panoptes_cli.database.{module_name}')
    return getattr(module, _DB_CLASSES[module_name])


class AbstractPanDB(metaclass=abc.ABCMeta):
    """The interface of every store: insert, find, the current record per collection.

    Subclasses store records as JSON lines; this class wraps, validates and
    queries them the same way for every backend.
    """

    def __init__(self, db_name=None, **kwargs):
        """Remember the database's name, once it is checked to be a safe name.

        Args:
            db_name: The database, such as 'panoptes'; test stores carry 'test' in it.
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
              conditions: list[Condition], limit: int | None) -> Iterator[dict]:
        """Yield the records dated in [since, until) meeting ``conditions``, newest first.

        At most ``limit`` records (all when None); records as JSON decoded them.
        """

    @abc.abstractmethod
    def _watch(self, collection: str) -> Iterator[list[dict]]:
        """Yield lists of the records stored from now on, oldest first, as they arrive.

        The first list (empty) comes once the starting point is taken; later
        ones come at least twice a second, empty when nothing arrived.
        """

    @abc.abstractmethod
    def _prune(self, collection: str, before: str) -> int:
        """Delete the records of ``collection`` dated before ``before``; return how many."""

    @abc.abstractmethod
    def _collections(self) -> list[str]:
        """Return the names of the collections that hold records."""

    @abc.abstractmethod
    def _current_record(self, collection: str) -> dict | None:
        """Return the current record of ``collection`` (as JSON decoded it), or None."""

    @abc.abstractmethod
    def _clear(self, collection: str) -> None:
        """Forget the current record of ``collection``."""

    # The documented interface.

    def insert_current(self, collection, obj, store_permanently=True) -> str:
        """Make ``obj`` the current record of ``collection``, and by default store it there too.

        One record with one id serves both: it is what :meth:`get_current` returns and
        (when ``store_permanently``) one more record of the collection. (panoptes-utils
        0.2.29's file store wrapped it a second time under another id.)

        Args:
            collection (str): The collection's name.
            obj (dict or str): The data to record.
            store_permanently (bool): Also add it to the collection's history, default True.

        Returns:
            str: The new record's id.

        Raises:
            panoptes_cli.error.InvalidSerialization: If ``obj`` cannot be written
                as JSON; nothing is stored then.
        """
        record = prepare_record(validate_name(collection), obj)
        self._store(collection, [record] if store_permanently else [], current=record)
        return record.id

    def insert(self, collection, obj) -> str:
        """Add ``obj`` to ``collection`` as a new record and return its id.

        The record gets an id, the collection's name and the time; ``obj`` becomes
        its ``data``.

        Args:
            collection (str): The collection's name.
            obj (dict or str): The data to record.

        Returns:
            str: The new record's id.

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
            collection (str): The collection's name.
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
        """Return the record last made current in ``collection``.

        Args:
            collection (str): The collection's name.
            parse (bool): Turn quantity strings and ISO times into Quantities
                and datetimes (default), or leave the record as stored.

        Returns:
            dict|None: The collection's current record, or None if it has none.
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
            collection (str): The collection's name.
            obj_id (str, optional): Record identifier returned earlier by insert
                or insert_current.
            since: Only records dated at or after this time (ISO-8601 string,
                datetime, astropy Time, or a duration before now like ``2h``).
            until: Only records dated before this time (same forms).
            where (dict or list[str]): Conditions on fields of ``data``: a
                dict like ``{'temp': 12.5, 'wind.speed': 3}`` (equality) or
                strings like ``temp>20``, ``status!=ok``, ``safe=true``
                (``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``; see
                :mod:`panoptes_cli.database.query`); a dotted key reaches into
                nested dicts.
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
        conditions = parse_where(where)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise IllegalValue(f'invalid limit {limit!r}: use a whole number >= 0')
        if obj_id is not None:
            record = self._find_record(collection, str(obj_id))
            if record is None or not self._wanted(record, since, until, conditions):
                return None
            return deserialize_all_objects(record) if parse else record
        return self._query(collection, since, until, conditions, limit, parse)

    def clear_current(self, type):
        """Forget which record is current in a collection (the records stay).

        Args:
            type (str): The collection's name (0.2.29 called it the type).
        """
        self._clear(validate_name(type))

    # Shared machinery.

    @staticmethod
    def _wanted(record: dict, since, until, conditions) -> bool:
        if since is not None or until is not None:
            date = record_date(record)
            if (since is not None and date < since) or (until is not None and date >= until):
                return False
        return matches(record, conditions)

    def _query(self, collection, since, until, conditions, limit, parse) -> Iterator[dict]:
        if limit == 0:
            return
        for record in self._scan(collection, since, until, conditions, limit):
            yield deserialize_all_objects(record) if parse else record

    # Beyond the manual.

    def follow(self, collection, *, since=None, until=None, where=None, seconds=None,
               parse=True) -> Iterator[dict]:
        """Yield the records of ``collection`` stored from now on, as they arrive, oldest first.

        Runs until the caller stops iterating (or Ctrl-C), or for ``seconds``
        when given. ``since``, ``until`` and ``where`` filter as in :meth:`find`.
        Each backend waits in its own way: LISTEN/NOTIFY on PostgreSQL, the
        data version on SQLite, the file's growth on the file store.

        >>> from panoptes_cli.database import PanDB
        >>> db = PanDB(db_type='memory', db_name='doctest_follow')
        >>> list(db.follow('weather', seconds=0.1))
        []
        """
        import time

        validate_name(collection)
        since = None if since is None else parse_time_bound(since)
        until = None if until is None else parse_time_bound(until)
        conditions = parse_where(where)
        deadline = None if seconds is None else time.monotonic() + float(seconds)
        watcher = self._watch(collection)
        try:
            for records in watcher:
                for record in records:
                    if self._wanted(record, since, until, conditions):
                        yield deserialize_all_objects(record) if parse else record
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            watcher.close()

    def prune(self, before, collections=None) -> dict[str, int]:
        """Delete the records dated before ``before`` (current records stay).

        Args:
            before: A time, in the forms ``since`` takes in :meth:`find`
                (``2024-01-01``, ``30d``, a datetime).
            collections (list[str], optional): Only these collections (default: all).

        Returns:
            dict: How many records were deleted, by collection.
        """
        before = parse_time_bound(before)
        names = self._collections() if collections is None else [
            validate_name(name) for name in collections]
        return {name: self._prune(name, before) for name in names}

    def collection_names(self) -> list[str]:
        """Return the sorted names of the collections holding records."""
        return sorted(self._collections())

    # Sending records on (panoptes db sync): stores that can be a sync's source.

    def unsent(self, target: str, batch_size: int) -> Iterator[tuple[list[tuple], object]]:
        """Yield batches of the records not yet sent to ``target``, in the order stored.

        Each batch is ``(rows, mark)``: rows are ``(collection, id, date, data
        JSON text)``; once they are safely stored at ``target``, pass ``mark``
        to :meth:`mark_sent` and the next sync starts after them.
        """
        raise NotSupported(f'a {type(self).__name__} store cannot be synced from; '
                           'use a sqlite or file store on the unit')

    def mark_sent(self, target: str, mark) -> None:
        """Remember that the records up to ``mark`` (from :meth:`unsent`) reached ``target``."""
        raise NotSupported(f'a {type(self).__name__} store cannot be synced from')

    def count_unsent(self, target: str) -> int:
        """Return how many records are not yet sent to ``target``."""
        raise NotSupported(f'a {type(self).__name__} store cannot be synced from')


class PanDB:
    """Open a store of the type asked for: ``PanDB(db_type='sqlite', db_name='panoptes')``.

    Calling it returns an object of the store's own class, never a ``PanDB``.
    ``db_name`` is passed on to it
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
        """Delete every record of a test database, for good.

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
