"""An in-memory store, shared per name within one process (for tests and simulators).

>>> from panoptes_cli.database import PanDB
>>> db = PanDB(db_type='memory', db_name='doctest_memory')
>>> db is PanDB(db_type='memory', db_name='doctest_memory')
True
>>> record_id = db.insert('weather', {'temp': 12.5})
>>> db.find('weather', record_id)['data']
{'temp': 12.5}
>>> PanDB.permanently_erase_database('memory', 'doctest_memory', really='Yes', dangerous='Totally')
>>> db.find('weather', record_id) is None
True
"""

import itertools
import json
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import suppress
from operator import itemgetter

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.query import limited

_DATE_THEN_SEQ = itemgetter(0, 1)


class PanMemoryDB(AbstractPanDB):
    """A store that lives in this process only, for tests and short-lived tools.

    Records are kept as JSON text, not as the objects given, so what comes back
    has been through the same serialization as in the stores on disk.
    """

    active_dbs = weakref.WeakValueDictionary()

    @classmethod
    def get_or_create(cls, db_name=None, **kwargs):
        """Return the memory store called ``db_name``, making it the first time.

        Every ``PanDB(db_type='memory', db_name=...)`` for one name must see the same
        records, and here the object itself holds them, so one object per name is
        shared (the stores on disk need no such thing: their files are shared).
        """
        with _registry_lock:
            db = cls.active_dbs.get(db_name)
            if db is None:
                db = cls(db_name=db_name, **kwargs)
                cls.active_dbs[db_name] = db
            return db

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lock = threading.Lock()
        # Numbers every stored record, in the order stored (never reused).
        self.sequence = itertools.count()
        # collection -> [(date, sequence number, JSON line)], in the order stored
        self.collections = {}
        # collection -> {id: JSON line}, the first record stored with each id
        self.ids = {}
        self.current = {}

    def clear_current(self, entry_type):
        """Forget the current record of one collection

        Args:
            entry_type (str): The type of entry in the current collection that
                should be cleared.
        """
        super().clear_current(entry_type)

    def _store(self, collection, records, current=None):
        with self.lock:
            if records:
                rows = self.collections.setdefault(collection, [])
                ids = self.ids.setdefault(collection, {})
                for record in records:
                    rows.append((record.date, next(self.sequence), record.text))
                    ids.setdefault(record.id, record.text)
            if current is not None:
                self.current[collection] = current.text

    def _find_record(self, collection, obj_id):
        with self.lock:
            text = self.ids.get(collection, {}).get(obj_id)
        return None if text is None else json.loads(text)

    def _scan(self, collection, since, until, conditions, limit) -> Iterator[dict]:
        with self.lock:
            rows = [row for row in self.collections.get(collection, ())
                    if (since is None or row[0] >= since) and (until is None or row[0] < until)]
        rows.sort(key=_DATE_THEN_SEQ, reverse=True)
        yield from limited((json.loads(text) for _date, _seq, text in rows), conditions, limit)

    def _watch(self, collection) -> Iterator[list[dict]]:
        with self.lock:
            rows = self.collections.get(collection)
            last = rows[-1][1] if rows else -1
        yield []
        while True:
            time.sleep(0.05)
            with self.lock:
                rows = self.collections.get(collection, [])
                start = len(rows)
                while start and rows[start - 1][1] > last:
                    start -= 1
                new = rows[start:]
            if new:
                last = new[-1][1]
            yield [json.loads(text) for _date, _seq, text in new]

    def _prune(self, collection, before) -> int:
        with self.lock:
            rows = self.collections.get(collection, [])
            kept = [row for row in rows if row[0] >= before]
            if len(kept) < len(rows):
                self.collections[collection] = kept
                ids = {}
                for _date, _seq, text in kept:
                    ids.setdefault(json.loads(text)['_id'], text)
                self.ids[collection] = ids
            return len(rows) - len(kept)

    def _collections(self):
        with self.lock:
            return [name for name, rows in self.collections.items() if rows]

    def _current_record(self, collection):
        with self.lock:
            text = self.current.get(collection)
        return None if text is None else json.loads(text)

    def _clear(self, collection):
        with self.lock, suppress(KeyError):
            del self.current[collection]

    @classmethod
    def permanently_erase_database(cls, db_name=None, *args, **kwargs):
        """Forget everything in the named memory database (every one when no name is given)."""
        with _registry_lock:
            names = [db_name] if db_name is not None else list(cls.active_dbs.keys())
            for name in names:
                db = cls.active_dbs.pop(name, None)
                if db is not None:
                    with db.lock:
                        db.collections.clear()
                        db.ids.clear()
                        db.current.clear()


_registry_lock = threading.Lock()
