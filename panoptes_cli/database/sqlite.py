"""A store in one SQLite file per database, safe for many processes at once.

The file is ``$PANDIR/<storage_dir>/<db_name>.sqlite`` (``storage_dir`` is
``sqlite_store`` by default). It runs in WAL mode: readers never wait for
writers, writers queue for up to ``timeout`` seconds, and a crash loses at
most the transaction in progress. Records are indexed by collection and id,
and by collection and date, so finding one among millions stays quick.

>>> import os, tempfile
>>> from unittest import mock
>>> scratch = tempfile.TemporaryDirectory()
>>> _ = mock.patch.dict(os.environ, PANDIR=scratch.name).start()  # a scratch $PANDIR
>>> from panoptes_cli.database import PanDB
>>> db = PanDB(db_type='sqlite', db_name='doctest_sqlite')
>>> ids = db.insert_many('weather', [{'temp': 11.0}, {'temp': 12.5}], current=True)
>>> db.get_current('weather')['_id'] == ids[-1]
True
>>> [r['data']['temp'] for r in db.find('weather', where=['temp=11.0'])]
[11.0]
>>> db.db_file.name
'doctest_sqlite.sqlite'
>>> PanDB.permanently_erase_database('sqlite', 'doctest_sqlite', really='Yes', dangerous='Totally')
>>> mock.patch.stopall(); scratch.cleanup()
"""

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.query import limited, sql_filters, sqlite_condition
from panoptes_cli.database.records import data_text, storage_root, validate_name
from panoptes_cli.error import DatabaseError, NotFound

_HINT = 'insert records first (panoptes db insert) or check --db-type, --db-name and $PANDIR'

_SCHEMA_VERSION = 2
_INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_id ON records (collection, id);
CREATE INDEX IF NOT EXISTS records_by_date ON records (collection, date);
"""
# AUTOINCREMENT: a record's seq is never reused, even after a prune empties the
# table, so a sync's high-water mark never skips records stored later.
_RECORDS = """
CREATE TABLE IF NOT EXISTS {name} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    date TEXT NOT NULL,
    record TEXT NOT NULL
)
"""
_SCHEMA = _RECORDS.format(name='records') + ';' + _INDEXES + """;
CREATE TABLE IF NOT EXISTS current (
    collection TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_marks (
    target TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID
"""
# Schema 1 -> 2: records gets AUTOINCREMENT (a copy, once), sync_marks is new.
_MIGRATE_FROM_1 = _RECORDS.format(name='records_v2') + """;
INSERT INTO records_v2 (seq, collection, id, date, record)
    SELECT seq, collection, id, date, record FROM records;
DROP TABLE records;
ALTER TABLE records_v2 RENAME TO records
"""
_POLL_SECONDS = 0.05


class PanSQLiteDB(AbstractPanDB):
    """Stores collections in one SQLite database file."""

    def __init__(self, db_name='panoptes', storage_dir='sqlite_store', timeout=60.0,
                 create=True, **kwargs):
        """Open (creating if needed) the SQLite store of the named database.

        Args:
            db_name (str, optional): Name of the database (the file name).
            storage_dir (str, optional): The directory in $PANDIR holding the
                database files, default ``sqlite_store``.
            timeout (float, optional): Seconds to wait for another process's
                write to finish before giving up, default 60.
            create (bool, optional): Create the store if it does not exist
                (default); with False, raise NotFound instead.
        """
        super().__init__(db_name='panoptes' if db_name is None else db_name, **kwargs)
        self.storage_dir = Path(storage_root(), storage_dir)
        self.db_file = self.storage_dir / f'{self.db_name}.sqlite'
        self.timeout = timeout
        if not create and not self.db_file.exists():
            raise NotFound(f'no sqlite store {self.db_name!r}: {self.db_file} does not exist; '
                           f'{_HINT}')
        self._local = threading.local()
        self._connection()

    def clear_current(self, collection):
        """Clear the current record of the collection.

        Args:
            collection (str): The collection whose current record should be cleared.
        """
        super().clear_current(collection)

    def _connection(self) -> sqlite3.Connection:
        """Return this thread's connection (SQLite connections are not shared between threads)."""
        connection = getattr(self._local, 'connection', None)
        if connection is not None and self._local.pid == os.getpid():
            return connection
        with self._errors():
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are begun explicitly, below.
            connection = sqlite3.connect(self.db_file, timeout=self.timeout, isolation_level=None)
            try:
                self._set_up(connection)
            except BaseException:
                connection.close()
                raise
        self._local.connection = connection
        self._local.pid = os.getpid()
        return connection

    def _set_up(self, connection: sqlite3.Connection) -> None:
        mode = connection.execute('PRAGMA journal_mode=WAL').fetchone()[0]
        if mode.lower() != 'wal':
            raise DatabaseError(f'{self.db_file}: cannot use write-ahead logging here '
                                f'(journal mode {mode!r}); put $PANDIR on a local disk')
        # In WAL mode NORMAL loses nothing on a crash of the program, only the
        # last commits on a power cut, and never corrupts the file.
        connection.execute('PRAGMA synchronous=NORMAL')
        version = connection.execute('PRAGMA user_version').fetchone()[0]
        if version == _SCHEMA_VERSION:
            return
        if version > _SCHEMA_VERSION:
            raise DatabaseError(f'{self.db_file}: written by a newer panoptes-cli '
                                f'(schema {version}); upgrade panoptes-cli to read it')
        with self._transaction(connection):
            # Statement by statement: executescript would commit our transaction.
            script = (_MIGRATE_FROM_1 + ';' if version == 1 else '') + _SCHEMA
            for statement in script.split(';'):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f'PRAGMA user_version={_SCHEMA_VERSION}')

    @contextmanager
    def _errors(self):
        try:
            yield
        except sqlite3.Error as err:
            reason = str(err)
            if 'locked' in reason or 'busy' in reason:
                reason += f' (another process held it for over {self.timeout:g} s)'
            raise DatabaseError(f'{self.db_file}: {reason}') from err

    @contextmanager
    def _transaction(self, connection: sqlite3.Connection):
        # IMMEDIATE takes the write lock at once, so waiting for another writer
        # goes through the busy timeout instead of failing on a lock upgrade.
        connection.execute('BEGIN IMMEDIATE')
        try:
            yield
        except BaseException:
            connection.execute('ROLLBACK')
            raise
        connection.execute('COMMIT')

    def _store(self, collection, records, current=None):
        connection = self._connection()
        with self._errors(), self._transaction(connection):
            if records:
                connection.executemany(
                    'INSERT INTO records (collection, id, date, record) VALUES (?, ?, ?, ?)',
                    [(collection, record.id, record.date, record.text) for record in records])
            if current is not None:
                connection.execute('INSERT OR REPLACE INTO current (collection, record) VALUES (?, ?)',
                                   (collection, current.text))

    def _find_record(self, collection, obj_id):
        with self._errors():
            row = self._connection().execute(
                'SELECT record FROM records WHERE collection = ? AND id = ? ORDER BY seq LIMIT 1',
                (collection, obj_id)).fetchone()
        return None if row is None else json.loads(row[0])

    def _scan(self, collection, since, until, conditions, limit) -> Iterator[dict]:
        # Scalars are compared by SQLite (json_extract); a dict or list value in Python.
        filters, params, in_python = sql_filters(since, until, conditions, sqlite_condition, '?')
        sql = f'SELECT record FROM records WHERE collection = ?{filters} ORDER BY date DESC, seq DESC'
        if limit is not None and not in_python:
            sql += f' LIMIT {int(limit)}'
        with self._errors():
            cursor = self._connection().execute(sql, [collection, *params])
            try:
                yield from limited((json.loads(text) for (text,) in cursor), in_python, limit)
            finally:
                cursor.close()

    def _watch(self, collection) -> Iterator[list[dict]]:
        # A connection of its own: data_version changes on commits by any other connection.
        with self._errors():
            connection = sqlite3.connect(self.db_file, timeout=self.timeout, isolation_level=None)
        try:
            with self._errors():
                last = connection.execute('SELECT COALESCE(MAX(seq), 0) FROM records').fetchone()[0]
                version = connection.execute('PRAGMA data_version').fetchone()[0]
            yield []
            while True:
                time.sleep(_POLL_SECONDS)
                with self._errors():
                    now = connection.execute('PRAGMA data_version').fetchone()[0]
                    if now == version:
                        yield []
                        continue
                    version = now
                    # Every new row, in one read: a commit between two reads cannot slip by.
                    rows = connection.execute(
                        'SELECT seq, collection, record FROM records WHERE seq > ? ORDER BY seq',
                        (last,)).fetchall()
                if rows:
                    last = rows[-1][0]
                yield [json.loads(text) for _seq, name, text in rows if name == collection]
        finally:
            connection.close()

    def _prune(self, collection, before) -> int:
        connection = self._connection()
        with self._errors(), self._transaction(connection):
            return connection.execute('DELETE FROM records WHERE collection = ? AND date < ?',
                                      (collection, before)).rowcount

    def _collections(self):
        with self._errors():
            return [name for (name,) in self._connection().execute(
                'SELECT DISTINCT collection FROM records')]

    def _current_record(self, collection):
        with self._errors():
            row = self._connection().execute(
                'SELECT record FROM current WHERE collection = ?', (collection,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _clear(self, collection):
        connection = self._connection()
        with self._errors(), self._transaction(connection):
            connection.execute('DELETE FROM current WHERE collection = ?', (collection,))

    def unsent(self, target, batch_size):
        connection = self._connection()
        with self._errors():
            row = connection.execute('SELECT seq FROM sync_marks WHERE target = ?',
                                     (target,)).fetchone()
        last = row[0] if row else 0
        while True:
            with self._errors():
                rows = connection.execute(
                    'SELECT seq, collection, id, date, record FROM records WHERE seq > ? '
                    'ORDER BY seq LIMIT ?', (last, batch_size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [(collection, obj_id, date, data_text(obj_id, collection, date, text))
                   for _seq, collection, obj_id, date, text in rows], last

    def mark_sent(self, target, mark):
        connection = self._connection()
        with self._errors(), self._transaction(connection):
            connection.execute('INSERT OR REPLACE INTO sync_marks (target, seq) VALUES (?, ?)',
                               (target, mark))

    def count_unsent(self, target):
        with self._errors():
            return self._connection().execute(
                'SELECT count(*) FROM records WHERE seq > '
                '(SELECT COALESCE(max(seq), 0) FROM sync_marks WHERE target = ?)',
                (target,)).fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection (it reopens when the store is used again)."""
        connection = getattr(self._local, 'connection', None)
        if connection is not None:
            self._local.connection = None
            connection.close()

    @classmethod
    def permanently_erase_database(cls, db_name, storage_dir='sqlite_store'):
        """Delete the named database's file (and its write-ahead log).

        Args:
            db_name (str): The database name.
            storage_dir (str, optional): The directory in ``$PANDIR`` holding it.
        """
        path = Path(storage_root(), storage_dir or 'sqlite_store',
                    f"{validate_name(db_name, 'database')}.sqlite")
        for suffix in ('', '-wal', '-shm'):
            with suppress(FileNotFoundError):
                os.remove(f'{path}{suffix}')
