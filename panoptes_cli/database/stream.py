"""Insert a stream of JSON records (NDJSON, or pretty-printed documents) into a store.

Records are committed in small batches, each as soon as the lines already
read are stored, so a slow live stream is stored line by line and a fast one
in large transactions. A line that is not JSON is reported with its number
and skipped; the others are stored.

>>> import io, os, tempfile
>>> from unittest import mock
>>> scratch = tempfile.TemporaryDirectory()
>>> _ = mock.patch.dict(os.environ, PANDIR=scratch.name).start()  # a scratch $PANDIR
>>> from panoptes_cli.database import PanDB
>>> db = PanDB(db_type='sqlite', db_name='doctest_stream')
>>> lines = io.BytesIO(b'{"temp": 12.5}\\n{"temp": \\n{"temp": 13.0}\\n')
>>> for batch in insert_stream(db, 'weather', lines):
...     for result in batch:
...         print(result.line, result.error or 'stored')
1 stored
2 InvalidDeserialization: line 2: invalid JSON: Expecting value at column 10
3 stored
>>> PanDB.permanently_erase_database('sqlite', 'doctest_stream', really='Yes', dangerous='Totally')
>>> mock.patch.stopall(); scratch.cleanup()
"""

import json
import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.records import prepare_record, validate_name
from panoptes_cli.error import InvalidDeserialization, PanError
from panoptes_cli.limits import LimitExceeded, check_depth, loads

# Bytes asked of the input at a time; a read returns what is there, so this
# only bounds the size of a batch.
_CHUNK_SIZE = 64 * 1024
_BATCH_SIZE = 1000
# Longest line read: a record is a few hundred bytes, and a longer line is
# skipped (reported with its number) without being held in memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
# Stands for a line longer than MAX_LINE_BYTES among the lines read.
_TOO_LONG = object()
_WHITESPACE = re.compile(r'\s*')


class LineResult(NamedTuple):
    """What became of one input record: its line number and its id, or the error."""

    line: int
    id: str | None = None
    error: PanError | None = None


def insert_stream(db: AbstractPanDB, collection: str, stream: BinaryIO, current: bool = False,
                  batch_size: int = _BATCH_SIZE) -> Iterator[list[LineResult]]:
    """Insert the JSON records read from ``stream``; yield each batch's results once it is stored.

    The input is NDJSON (one record per line; blank lines are ignored) or,
    when its first line is a lone ``{`` or ``[``, pretty-printed JSON
    documents one after another (each document is one record; such input is
    read to its end first). A JSON array, on a line or as a document, is one
    record per element.

    Args:
        db: The store.
        collection (str): The collection to insert into.
        stream: A binary file object (``sys.stdin.buffer``, an open file).
        current (bool): Also make the last record of each batch the current one.
        batch_size (int): At most this many records per transaction.

    Yields:
        list[LineResult]: The results of one batch, in input order, after its
        records are stored. An error storing a batch (a locked or full disk)
        is raised: the records yielded before it are stored, its own are not.
    """
    validate_name(collection)
    for lines in _batches(stream, batch_size):
        results, records = [], []
        for number, obj, text, error in _elements(lines):
            if error is None:
                try:
                    record = prepare_record(collection, obj, text)
                except PanError as err:
                    error = type(err)(f'line {number}: {err.msg}')
                else:
                    records.append(record)
                    results.append(LineResult(number, record.id))
                    continue
            results.append(LineResult(number, error=error))
        if records:
            db.insert_many(collection, records, current=current)
        yield results


def _elements(lines: list[tuple]) -> Iterator[tuple]:
    """Spread a JSON array over one record per element, as sqlite-utils does."""
    for number, obj, text, error in lines:
        if isinstance(obj, list):
            for element in obj:
                yield number, element, None, None
        else:
            yield number, obj, text, error


def _batches(stream: BinaryIO, batch_size: int) -> Iterator[list[tuple]]:
    """Yield lists of (line number, object, its JSON text, error), at most one per read."""
    reads = _read_lines(getattr(stream, 'read1', stream.read))
    number = 0
    first = True
    for lines in reads:
        batch = []
        for index, line in enumerate(lines):
            number += 1
            if line is _TOO_LONG:
                first = False
                batch.append((number, None, None, InvalidDeserialization(
                    f'line {number}: longer than {MAX_LINE_BYTES} bytes; skipped')))
                continue
            if not line.strip():
                continue
            if first:
                first = False
                if line.strip() in (b'{', b'['):
                    rest = lines[index:] + [line for later in reads for line in later]
                    yield from _documents(b'\n'.join(rest), number, batch_size)
                    return
            batch.append(_decode(number, line))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def _read_lines(read) -> Iterator[list]:
    """Yield the whole lines each read completes (an unterminated last line at the end).

    A line longer than MAX_LINE_BYTES is dropped as it is read and stands as
    ``_TOO_LONG`` in its place.
    """
    # A byte order mark some editors put at the start is not part of the JSON.
    pending = bytearray()
    too_long = False
    start = True
    while chunk := read(_CHUNK_SIZE):
        if start:
            chunk, start = chunk.removeprefix(b'\xef\xbb\xbf'), False
        lines = chunk.split(b'\n')
        last = lines.pop()
        if lines:
            # The first piece ends the line pending from earlier reads.
            if too_long:
                lines[0] = _TOO_LONG
            elif pending:
                lines[0] = bytes(pending + lines[0])
            pending.clear()
            too_long = False
        if not too_long:
            pending += last
            if len(pending) > MAX_LINE_BYTES:
                pending.clear()
                too_long = True
        if lines:
            yield [_TOO_LONG if line is not _TOO_LONG and len(line) > MAX_LINE_BYTES else line
                   for line in lines]
    if too_long:
        yield [_TOO_LONG]
    elif pending:
        yield [bytes(pending)]


def _decode(number: int, line: bytes) -> tuple:
    try:
        text = line.decode()
        return number, loads(text), text.strip(), None
    except UnicodeDecodeError:
        return number, None, None, InvalidDeserialization(f'line {number}: not UTF-8 text')
    except json.JSONDecodeError as err:
        return number, None, None, InvalidDeserialization(
            f'line {number}: invalid JSON: {err.msg} at column {err.colno}')
    except LimitExceeded as err:
        return number, None, None, InvalidDeserialization(f'line {number}: {err}; skipped')


def _documents(data: bytes, first_line: int, batch_size: int) -> Iterator[list[tuple]]:
    """Yield the JSON documents in ``data`` (starting at line ``first_line``) in batches."""
    try:
        text = data.decode()
    except UnicodeDecodeError as err:
        number = first_line + data.count(b'\n', 0, err.start)
        yield [(number, None, None, InvalidDeserialization(f'line {number}: not UTF-8 text'))]
        return
    decoder = json.JSONDecoder()
    position = 0
    batch = []
    while True:
        position = _WHITESPACE.match(text, position).end()
        if position == len(text):
            break
        number = first_line + text.count('\n', 0, position)
        try:
            obj, position = decoder.raw_decode(text, position)
            check_depth(obj)
        except json.JSONDecodeError as err:
            number = first_line + err.lineno - 1
            batch.append((number, None, None, InvalidDeserialization(
                f'line {number}: invalid JSON: {err.msg} at column {err.colno}; '
                'the input after it was not read')))
            break
        except RecursionError:
            batch.append((number, None, None, InvalidDeserialization(
                f'line {number}: nested too deeply; the input after it was not read')))
            break
        except LimitExceeded as err:
            batch.append((number, None, None, InvalidDeserialization(f'line {number}: {err}; '
                                                                     'skipped')))
        else:
            # Pretty-printed text spans lines: it is encoded again, on one line.
            batch.append((number, obj, None, None))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
