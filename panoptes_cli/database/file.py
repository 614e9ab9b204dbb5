"""A store of JSON-lines files, one per collection, safe for many writing processes.

The layout is panoptes-utils' own, so existing stores stay readable:
``$PANDIR/<storage_dir>/<db_name>/<collection>.json`` holds one JSON record
per line, ``current_<collection>.json`` the current record.

Writers append whole lines while holding an exclusive ``flock`` on the file,
so records from several processes never interleave; the current record is
written to a temporary file and renamed over the old one, so it is always
whole. A line cut short by a crash is skipped with a warning when reading,
and the next writer starts a fresh line after it.

>>> import os, tempfile
>>> from unittest import mock
>>> scratch = tempfile.TemporaryDirectory()
>>> _ = mock.patch.dict(os.environ, PANDIR=scratch.name).start()  # a scratch $PANDIR
>>> from panoptes_cli.database.file import PanFileDB
>>> db = PanFileDB(db_name='doctest_file')
>>> record_id = db.insert('weather', {'temp': 12.5})
>>> db.find('weather', record_id)['data']
{'temp': 12.5}
>>> sorted(p.name for p in __import__('pathlib').Path(db.storage_dir).iterdir())
['weather.json']
>>> PanFileDB.permanently_erase_database('doctest_file')
>>> mock.patch.stopall(); scratch.cleanup()
"""

import fcntl
import heapq
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from operator import itemgetter

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.records import (
    PreparedRecord,
    record_date,
    storage_root,
    validate_name,
)
from panoptes_cli.files import atomic_path

_CURRENT_PREFIX = 'current_'
_DATE_THEN_LINE = itemgetter(0, 1)
_BLOCK_SIZE = 1 << 20


class PanFileDB(AbstractPanDB):
    """Stores collections as files of JSON records."""

    def __init__(self, db_name='panoptes', storage_dir='json_store', **kwargs):
        """Flat file storage for json records.

        This will simply store each json record inside a file corresponding
        to the type. Each entry will be stored in a single line.

        Args:
            db_name (str, optional): Name of the database containing the collections.
            storage_dir (str, optional): The name of the directory in $PANDIR where
                the database files will be stored. Default is ``json_store`` for
                backwards compatibility.
        """
        super().__init__(db_name='panoptes' if db_name is None else db_name, **kwargs)
        self.db_folder = self.db_name
        self.storage_dir = os.path.join(storage_root(), storage_dir, self.db_folder)
        os.makedirs(self.storage_dir, exist_ok=True)

    def clear_current(self, record_type):
        """Clears the current record of the given type.

        Args:
            record_type (str): The record type, e.g. 'weather', 'environment', etc.
        """
        super().clear_current(record_type)

    def _get_file(self, collection: str, permanent: bool = True) -> str:
        name = f'{collection}.json' if permanent else f'{_CURRENT_PREFIX}{collection}.json'
        return os.path.join(self.storage_dir, name)

    def _store(self, collection, records, current=None):
        if records:
            payload = ''.join(f'{record.text}\n' for record in records).encode()
            _append(self._get_file(collection), payload)
        if current is not None:
            self._replace_current(collection, current)

    def _replace_current(self, collection: str, record: PreparedRecord) -> None:
        # '.tmp': a leftover of a killed writer is cleaned up by permanently_erase_database.
        with atomic_path(self._get_file(collection, permanent=False), suffix='.tmp') as temp:
            temp.write_text(f'{record.text}\n')

    def _find_record(self, collection, obj_id):
        path = self._get_file(collection)
        # Ids are written the way json.dumps writes strings: search for that
        # text through the file, and parse only the lines that have it.
        needle = json.dumps(obj_id)[1:-1].encode()
        for number, line in _lines_with(path, needle):
            record = _parse(line, path, number)
            if record is not None and record.get('_id') == obj_id:
                return record
        return None

    def _scan(self, collection, since, until, limit) -> Iterator[dict]:
        path = self._get_file(collection)
        entries = []
        for number, line in _lines(path):
            record = _parse(line, path, number)
            if record is None:
                continue
            date = record_date(record)
            if (since is not None and date < since) or (until is not None and date >= until):
                continue
            entries.append((date, number, record))
        # Newest first; records of the same date in reverse order of writing.
        if limit is None:
            entries.sort(key=_DATE_THEN_LINE, reverse=True)
        else:
            entries = heapq.nlargest(limit, entries, key=_DATE_THEN_LINE)
        for _date, _number, record in entries:
            yield record

    def _current_record(self, collection):
        path = self._get_file(collection, permanent=False)
        try:
            with open(path, 'rb') as handle:
                line = handle.read()
        except FileNotFoundError:
            return None
        return _parse(line, path, 1)

    def _clear(self, collection):
        with suppress(FileNotFoundError):
            os.remove(self._get_file(collection, permanent=False))

    @classmethod
    def permanently_erase_database(cls, db_name, storage_dir='json_store'):
        """Delete every collection and current record of the named database.

        Args:
            db_name (str): The database (a folder in the storage directory).
            storage_dir (str, optional): The storage directory in ``$PANDIR``.
        """
        folder = os.path.join(storage_root(), storage_dir or 'json_store',
                              validate_name(db_name, 'database'))
        with suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.name.endswith(('.json', '.tmp')) and entry.is_file():
                    os.remove(entry.path)
        with suppress(OSError):
            os.rmdir(folder)


def _append(path: str, payload: bytes) -> None:
    """Append whole lines to ``path`` under an exclusive lock; undo a partial write."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b'\n':
            # A writer died mid-line: end that line so ours stays readable.
            payload = b'\n' + payload
        try:
            written = 0
            while written < len(payload):
                written += os.write(fd, payload[written:])
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


@contextmanager
def _snapshot(path: str):
    """Open ``path`` for reading; give (file, size), or None if it does not exist.

    Writers hold the lock while they append, so the size seen under it ends at
    a line boundary; lines appended later are left for the next read.
    """
    try:
        handle = open(path, 'rb')
    except FileNotFoundError:
        yield None
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        size = os.fstat(handle.fileno()).st_size
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        yield handle, size


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) for the lines that were whole when reading began."""
    with _snapshot(path) as opened:
        if opened is None:
            return
        handle, size = opened
        consumed = 0
        for number, line in enumerate(handle, 1):
            consumed += len(line)
            if consumed >= size:
                yield number, line[:len(line) - (consumed - size)]
                return
            yield number, line


def _lines_with(path: str, needle: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) for the lines containing ``needle``, searching block by block."""
    with _snapshot(path) as opened:
        if opened is None:
            return
        handle, remaining = opened
        lines_before = 0
        carry = b''
        while remaining > 0:
            chunk = handle.read(min(_BLOCK_SIZE, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            block = carry + chunk
            # Search whole lines only; the rest waits for the next block.
            cut = block.rfind(b'\n') + 1 if remaining > 0 else len(block)
            block, carry = block[:cut], block[cut:]
            found = block.find(needle)
            while found != -1:
                start = block.rfind(b'\n', 0, found) + 1
                end = block.find(b'\n', found) + 1 or len(block)
                yield lines_before + block.count(b'\n', 0, start) + 1, block[start:end]
                found = block.find(needle, end)
            lines_before += block.count(b'\n')


def _parse(line: bytes, path: str, number: int) -> dict | None:
    """Decode one stored line; warn about (and skip) a torn or corrupt one."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:
        _warn(f'{path} line {number}: not a whole JSON record (a write cut short by a crash?); '
              'skipped')
        return None
    if not isinstance(record, dict):
        _warn(f'{path} line {number}: not a record; skipped')
        return None
    return record


def _warn(message: str) -> None:
    # Imported here: loguru costs start-up time that healthy stores never need.
    from panoptes_cli.logging import logger

    logger.warning(message)
