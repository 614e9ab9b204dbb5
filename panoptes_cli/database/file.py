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
import mmap
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from operator import itemgetter

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.query import limited, matches
from panoptes_cli.database.records import (
    PreparedRecord,
    record_date,
    storage_root,
    validate_name,
)
from panoptes_cli.error import DatabaseError, NotFound
from panoptes_cli.files import atomic_path
from panoptes_cli.serializers import to_json

_CURRENT_PREFIX = 'current_'
# Beside <collection>.json when its records are not in date order (inserted
# with dates of their own): readers then sort instead of reading from the end.
_UNORDERED = '.unordered'
# How much of a file's end a writer reads to find the date of its last record.
_TAIL_SIZE = 64 * 1024
_POLL_SECONDS = 0.05
_HINT = 'insert records first (panoptes db insert) or check --db-type, --db-name and $PANDIR'
# Where `panoptes db sync` keeps how far each collection file was sent, by target.
_MARKS = 'sync_marks.state'
_RECORD_KEYS = {'_id', 'type', 'date', 'data'}
_DATE_THEN_LINE = itemgetter(0, 1)
_BLOCK_SIZE = 1 << 20


class PanFileDB(AbstractPanDB):
    """One JSON-lines file per collection, in a directory per database."""

    def __init__(self, db_name='panoptes', storage_dir='json_store', create=True, **kwargs):
        """Open (or make) a store of JSON-lines files, one file per collection.

        Every record is one line of JSON appended to its collection's file.

        Args:
            db_name (str, optional): The database: a directory holding its collections.
            storage_dir (str, optional): Where databases live, relative to $PANDIR
                (else the per-user data directory); ``json_store`` as in 0.2.29.
            create (bool, optional): Create the store if it does not exist
                (default); with False, raise NotFound instead.
        """
        super().__init__(db_name='panoptes' if db_name is None else db_name, **kwargs)
        self.db_folder = self.db_name
        self.storage_dir = os.path.join(storage_root(), storage_dir, self.db_folder)
        if not create and not os.path.isdir(self.storage_dir):
            raise NotFound(f'no file store {self.db_name!r}: {self.storage_dir} does not exist; '
                           f'{_HINT}')
        os.makedirs(self.storage_dir, exist_ok=True)

    def clear_current(self, record_type):
        """Forget the current record of one collection.

        Args:
            record_type (str): the collection, such as 'weather', 'environment', etc.
        """
        super().clear_current(record_type)

    def _get_file(self, collection: str, permanent: bool = True) -> str:
        name = f'{collection}.json' if permanent else f'{_CURRENT_PREFIX}{collection}.json'
        return os.path.join(self.storage_dir, name)

    def _store(self, collection, records, current=None):
        if records:
            payload = ''.join(f'{record.text}\n' for record in records).encode()
            dates = [record.date for record in records]
            _append(self._get_file(collection), payload, dates)
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
        for line, number in _lines_with(path, needle):
            stored = _parse(line, path, number, unwrap=False)
            record = _unwrap(stored)
            # A record 0.2.29 wrapped is found by its own id or by the wrapper's.
            if record is not None and obj_id in (record.get('_id'), stored.get('_id')):
                return record
        return None

    def _scan(self, collection, since, until, conditions, limit) -> Iterator[dict]:
        path = self._get_file(collection)
        if not os.path.exists(path + _UNORDERED):
            yield from _newest_first(path, since, until, conditions, limit)
            return
        entries = []
        for number, line in _lines(path):
            record = _parse(line, path, number)
            if record is None:
                continue
            date = record_date(record)
            if (since is not None and date < since) or (until is not None and date >= until):
                continue
            if conditions and not matches(record, conditions):
                continue
            entries.append((date, number, record))
        # Newest first; records of the same date in reverse order of writing.
        if limit is None:
            entries.sort(key=_DATE_THEN_LINE, reverse=True)
        else:
            entries = heapq.nlargest(limit, entries, key=_DATE_THEN_LINE)
        for _date, _number, record in entries:
            yield record

    def _watch(self, collection) -> Iterator[list[dict]]:
        path = self._get_file(collection)
        position, inode = _size_and_inode(path)
        yield []
        while True:
            time.sleep(_POLL_SECONDS)
            size, now_inode = _size_and_inode(path)
            if now_inode != inode:
                # A new file: read it from its start; a replaced one (pruned or
                # erased) holds only records already seen: go on from its end.
                position, inode = (0 if inode is None else size), now_inode
            if size <= position:
                yield []
                continue
            records = []
            with _snapshot(path) as opened:
                if opened is not None:
                    handle, size = opened
                    handle.seek(position)
                    chunk = handle.read(size - position)
                    position += len(chunk)
                    for line in chunk.splitlines():
                        record = _parse(line, path, '(appended)')
                        if record is not None:
                            records.append(record)
            yield records

    def _prune(self, collection, before) -> int:
        path = self._get_file(collection)
        marks = self._marks()
        sent = {target: done[collection] for target, done in marks.items() if collection in done}

        def keep(line: bytes) -> bool:
            record = _parse(line, path, '(pruning)')
            return record is None or record_date(record) >= before

        removed, moved = _rewrite(path, keep, sent.values())
        if removed and sent:
            # What was sent is counted in bytes: the same lines now start elsewhere.
            for target, offset in sent.items():
                marks[target][collection] = moved[offset]
            with atomic_path(self._marks_file(), suffix='.tmp') as temp:
                temp.write_text(json.dumps(marks))
        return removed

    def _collections(self):
        with suppress(FileNotFoundError):
            return [entry.name[:-5] for entry in os.scandir(self.storage_dir)
                    if entry.name.endswith('.json') and not entry.name.startswith(_CURRENT_PREFIX)
                    and entry.stat().st_size > 0]
        return []

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

    def _marks_file(self) -> str:
        return os.path.join(self.storage_dir, _MARKS)

    def _marks(self) -> dict:
        try:
            with open(self._marks_file(), 'rb') as handle:
                marks = json.loads(handle.read())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise DatabaseError(f'{self._marks_file()}: unreadable sync marks; delete it to '
                                'sync everything again (nothing is stored twice)') from None
        return marks if isinstance(marks, dict) else {}

    def unsent(self, target, batch_size):
        position = dict(self._marks().get(target, {}))
        for collection in sorted(self._collections()):
            path = self._get_file(collection)
            offset = position.get(collection, 0)
            rows = []
            with _snapshot(path) as opened:
                if opened is None:
                    continue
                handle, size = opened
                handle.seek(offset)
                for line in handle:
                    # Only whole lines (a torn one is left: it never becomes a record).
                    if offset + len(line) > size or not line.endswith(b'\n'):
                        break
                    offset += len(line)
                    record = _parse(line, path, f'at byte {offset - len(line)}')
                    if record is None or not isinstance(record.get('_id'), str):
                        continue
                    rows.append((collection, record['_id'], record_date(record),
                                 to_json(record.get('data'))))
                    if len(rows) == batch_size:
                        position[collection] = offset
                        yield rows, dict(position)
                        rows = []
            if rows or offset != position.get(collection, 0):
                position[collection] = offset
                yield rows, dict(position)

    def mark_sent(self, target, mark):
        marks = self._marks()
        marks[target] = mark
        with atomic_path(self._marks_file(), suffix='.tmp') as temp:
            temp.write_text(json.dumps(marks))

    def count_unsent(self, target):
        position = self._marks().get(target, {})
        count = 0
        for collection in self._collections():
            with _snapshot(self._get_file(collection)) as opened:
                if opened is not None:
                    handle, size = opened
                    handle.seek(position.get(collection, 0))
                    remaining = size - handle.tell()
                    while remaining > 0:
                        block = handle.read(min(_BLOCK_SIZE, remaining))
                        if not block:
                            break
                        remaining -= len(block)
                        count += block.count(b'\n')
        return count

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
                if (entry.name.endswith(('.json', '.tmp', _UNORDERED)) or entry.name == _MARKS) \
                        and entry.is_file():
                    os.remove(entry.path)
        with suppress(OSError):
            os.rmdir(folder)


@contextmanager
def _locked_for_writing(path: str):
    """Open ``path`` (creating it) with an exclusive lock; give (fd, size).

    A prune replaces the file while holding the lock on the old one: a writer
    that got that lock reopens the new file, so its lines are not lost.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stat = os.fstat(fd)
            with suppress(FileNotFoundError):
                if os.stat(path).st_ino == stat.st_ino:
                    yield fd, stat.st_size
                    return
        finally:
            os.close(fd)


def _append(path: str, payload: bytes, dates: list[str]) -> None:
    """Append whole lines to ``path`` under an exclusive lock; undo a partial write.

    Also notes (in a marker file beside it) when the file stops being in date
    order, so readers know whether the newest records are at its end.
    """
    with _locked_for_writing(path) as (fd, size):
        tail = os.pread(fd, min(size, _TAIL_SIZE), size - min(size, _TAIL_SIZE)) if size else b''
        if tail and not tail.endswith(b'\n'):
            # A writer died mid-line: end that line so ours stays readable.
            payload = b'\n' + payload
        if dates != sorted(dates) or (size and dates[0] < _last_date(tail)):
            with open(path + _UNORDERED, 'ab'):
                pass
        try:
            written = 0
            while written < len(payload):
                written += os.write(fd, payload[written:])
        except BaseException:
            os.ftruncate(fd, size)
            raise


def _last_date(tail: bytes) -> str:
    """Return the date of the last whole record in ``tail`` ('\uffff' when unknown: unordered)."""
    lines = tail.rstrip(b'\n').rsplit(b'\n', 1)
    if len(lines) < 2 and len(tail) >= _TAIL_SIZE:
        return '\uffff'
    try:
        record = _unwrap(json.loads(lines[-1]))
    except ValueError:
        return '\uffff'
    return record_date(record) if isinstance(record, dict) else '\uffff'


def _rewrite(path: str, keep, offsets=()) -> tuple[int, dict[int, int]]:
    """Replace ``path`` by its lines for which ``keep(line)`` is true, under the writers' lock.

    Returns how many lines went, and where each of ``offsets`` (byte offsets
    at line starts in the old file) falls in the new one.
    """
    offsets = sorted(set(offsets))
    moved = {offset: offset for offset in offsets}
    if not os.path.exists(path):
        return 0, moved
    with _locked_for_writing(path) as (fd, _size):
        kept, removed = [], 0
        old_at = new_at = 0
        pending = iter(offsets)
        offset = next(pending, None)
        with open(fd, 'rb', closefd=False) as handle:
            for line in handle:
                while offset is not None and offset <= old_at:
                    moved[offset] = new_at
                    offset = next(pending, None)
                old_at += len(line)
                if keep(line):
                    line = line if line.endswith(b'\n') else line + b'\n'
                    kept.append(line)
                    new_at += len(line)
                else:
                    removed += 1
        while offset is not None:
            moved[offset] = new_at
            offset = next(pending, None)
        if removed:
            with atomic_path(path, suffix='.tmp') as temp:
                with open(temp, 'wb') as out:
                    out.writelines(kept)
    return removed, moved


def _size_and_inode(path: str) -> tuple[int, int | None]:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return 0, None
    return stat.st_size, stat.st_ino


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


def _lines_reversed(path: str) -> Iterator[tuple[bytes, str]]:
    """Yield (line, its place counted from the end) for the whole lines, last line first."""
    with _snapshot(path) as opened:
        if opened is None:
            return
        handle, end = opened
        carry = b''
        from_end = 0
        while end > 0:
            start = max(0, end - _BLOCK_SIZE)
            handle.seek(start)
            block = handle.read(end - start) + carry
            end = start
            lines = block.split(b'\n')
            # The first piece may be the end of a line that starts in an earlier block.
            carry = lines[0] if start > 0 else b''
            for line in reversed(lines if start == 0 else lines[1:]):
                if line:
                    from_end += 1
                    yield line, f'{from_end} from the end'


def _newest_first(path, since, until, conditions, limit) -> Iterator[dict]:
    """Yield records from the end of a file in date order: the newest without reading the rest."""
    return limited(_dated_from_end(path, since, until), conditions, limit)


def _dated_from_end(path, since, until) -> Iterator[dict]:
    for line, number in _lines_reversed(path):
        record = _parse(line, path, number)
        if record is None:
            continue
        date = record_date(record)
        if until is not None and date >= until:
            continue
        if since is not None and date < since:
            return
        yield record


def _lines_with(path: str, needle: bytes) -> Iterator[tuple[bytes, int | None]]:
    """Yield (line, line number) for the whole lines containing ``needle``.

    The file is mapped, not read: the search runs over the page cache with no
    copy; only the lines found are copied out. The line number is counted
    only for a line that fails to parse (None stands for "count it").
    """
    with _snapshot(path) as opened:
        if opened is None:
            return
        handle, size = opened
        if size == 0:
            return
        with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            found = mapped.find(needle)
            while found != -1:
                start = mapped.rfind(b'\n', 0, found) + 1
                end = mapped.find(b'\n', found)
                end = size if end == -1 else end + 1
                yield mapped[start:end], _LineNumber(mapped, start)
                found = mapped.find(needle, end)


class _LineNumber:
    """A line's number in a mapped file, counted only when shown (in a warning)."""

    def __init__(self, mapped, start: int):
        self.mapped = mapped
        self.start = start

    def __str__(self) -> str:
        return str(self.mapped[:self.start].count(b'\n') + 1)


def _parse(line: bytes, path: str, number, unwrap: bool = True) -> dict | None:
    """Decode one stored line; warn about (and skip) a torn or corrupt one.

    ``number`` says where the line is, in the warning. With ``unwrap``, a
    record panoptes-utils 0.2.29 wrapped comes out as the record inside.
    """
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
    return _unwrap(record) if unwrap else record


def _unwrap(record):
    """Return the record a panoptes-utils 0.2.29 file store wrapped a second time, else ``record``.

    0.2.29's ``insert_current`` stored ``{"_id", "type", "date", "data": <the
    current record>}``: the record inside is the one its caller knew (its id
    is the one insert_current returned).

    >>> inner = {'_id': 'b', 'data': {'temp': 1}, 'type': 'weather', 'date': '2024-05-01T00:00:00.000'}
    >>> _unwrap({'_id': 'a', 'data': inner, 'type': 'weather', 'date': '2024-05-01T00:00:00.014'}) == inner
    True
    """
    if isinstance(record, dict):
        data = record.get('data')
        if (isinstance(data, dict) and data.keys() == _RECORD_KEYS
                and data.get('type') == record.get('type') and record.keys() == _RECORD_KEYS):
            return data
    return record


def _warn(message: str) -> None:
    # Imported here: loguru costs start-up time that healthy stores never need.
    from panoptes_cli.logging import logger

    logger.warning(message)
