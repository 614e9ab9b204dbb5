"""Reading NDJSON streams and JSON documents into a store, batch by batch."""

import io
import json
import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_database import JSON_DATA

from panoptes_cli.database import PanDB
from panoptes_cli.database.stream import insert_stream
from panoptes_cli.error import IllegalValue


@pytest.fixture(params=['sqlite', 'file'])
def db(request):
    db = PanDB(db_type=request.param, db_name='panoptes_testing')
    yield db
    PanDB.permanently_erase_database(request.param, 'panoptes_testing', really='Yes',
                                     dangerous='Totally')


def run(db, data: bytes, **kwargs):
    """Insert ``data``; return (line, id or error text) for every result, and the batches."""
    batches = list(insert_stream(db, 'weather', io.BytesIO(data), **kwargs))
    results = [(r.line, r.id if r.error is None else r.error.msg) for b in batches for r in b]
    return results, batches


def stored(db):
    return [r['data'] for r in db.find('weather', parse=False)][::-1]


def test_ndjson(db):
    results, _ = run(db, b'{"temp": 1}\n\n  \n{"temp": 2}\r\n[3]\n"four"\n')
    assert [line for line, _ in results] == [1, 4, 5, 6]
    assert all(db.find('weather', obj_id) for _, obj_id in results)
    # A JSON array is one record per element (issue 13).
    assert stored(db) == [{'temp': 1}, {'temp': 2}, 3, 'four']


@pytest.mark.parametrize('data', [
    b'[{"temp": 1}, {"temp": 2}, {"temp": 3}]\n',
    b'[\n  {"temp": 1},\n  {"temp": 2},\n  {"temp": 3}\n]\n',
])
def test_a_json_array_is_one_record_per_element(db, data):
    results, _ = run(db, data)
    assert len(results) == 3 and len({obj_id for _, obj_id in results}) == 3
    assert stored(db) == [{'temp': 1}, {'temp': 2}, {'temp': 3}]


def test_bad_lines_are_reported_and_skipped(db):
    data = b'{"temp": 1}\n{"temp": \nnot json\n{"temp": 4}\n\xff\xfe\n{"bad": NaNx}\n{"temp": 7}'
    results, _ = run(db, data)
    errors = {line: why for line, why in results if ' ' in why}
    assert errors == {
        2: 'line 2: invalid JSON: Expecting value at column 10',
        3: 'line 3: invalid JSON: Expecting value at column 1',
        5: 'line 5: not UTF-8 text',
        6: "line 6: invalid JSON: Expecting ',' delimiter at column 12",
    }
    assert stored(db) == [{'temp': 1}, {'temp': 4}, {'temp': 7}]


def test_unusable_records_are_reported(db):
    results, _ = run(db, b'{"_id": 5, "type": "w", "date": "2024-01-01", "data": 1}\n'
                         b'{"_id": "x", "type": "w", "date": "soon", "data": 1}\n{"ok": 1}\n')
    assert results[0] == (1, ('line 1: cannot store a weather record: _id must be a non-empty '
                              'string, not 5'))
    assert results[1] == (2, "line 2: 'soon' is not an ISO-8601 time")
    assert stored(db) == [{'ok': 1}]


def test_records_from_find_keep_their_ids(db):
    first = db.insert('weather', {'temp': 1})
    lines = b''.join(f'{json.dumps(r)}\n'.encode() for r in db.find('weather', parse=False))
    other = PanDB(db_type='sqlite', db_name='panoptes_testing_copy')
    list(insert_stream(other, 'weather', io.BytesIO(lines)))
    assert other.find('weather', first, parse=False) == db.find('weather', first, parse=False)
    PanDB.permanently_erase_database('sqlite', 'panoptes_testing_copy', really='Yes',
                                     dangerous='Totally')


def test_pretty_printed_documents(db):
    data = b'\n{\n  "temp": 1,\n  "sky": "clear"\n}\n{\n  "temp": 2\n}\n[\n 3\n]\n'
    results, _ = run(db, data)
    assert [line for line, _ in results] == [2, 6, 9]
    assert stored(db) == [{'temp': 1, 'sky': 'clear'}, {'temp': 2}, 3]


def test_a_bad_document_stops_the_input(db):
    data = b'{\n  "temp": 1\n}\n{\n  "temp": \n}\n{"temp": 3}\n'
    results, _ = run(db, data)
    assert results[0][1] != results[1][1]
    assert results[1] == (6, ('line 6: invalid JSON: Expecting value at column 1; '
                              'the input after it was not read'))
    assert len(results) == 2
    assert stored(db) == [{'temp': 1}]


def test_last_line_without_newline(db):
    results, _ = run(db, b'{"temp": 1}\n{"temp": 2}')
    assert [line for line, _ in results] == [1, 2]


def test_empty_input(db):
    assert run(db, b'') == ([], [])
    assert run(db, b'\n\n') == ([], [])


def test_batches_are_bounded(db):
    _, batches = run(db, b'{"n": 1}\n' * 25, batch_size=10)
    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert len(stored(db)) == 25


def test_current(db):
    results, _ = run(db, b'{"n": 1}\n{"n": 2}\nbad\n', current=True)
    assert db.get_current('weather')['_id'] == results[1][1]


def test_collection_name_is_checked_before_reading(db):
    stream = io.BytesIO(b'{}\n')
    with pytest.raises(IllegalValue):
        list(insert_stream(db, '../weather', stream))
    assert stream.tell() == 0


def test_a_live_stream_is_stored_as_it_arrives(db):
    """Each line is stored (and its result given) before the next one is written."""
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, 'rb')
    writer = os.fdopen(write_fd, 'wb', buffering=0)
    results = insert_stream(db, 'weather', stream)
    for n in range(3):
        writer.write(b'{"n": %d}\n' % n)
        (result,) = next(results)
        assert db.find('weather', result.id)['data'] == {'n': n}
    writer.close()
    assert list(results) == []
    stream.close()


def test_storage_errors_are_raised_after_earlier_batches_are_stored(db, monkeypatch):
    calls = []
    real = type(db).insert_many

    def fail_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, 'No space left on device')
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(db), 'insert_many', fail_second)
    results = insert_stream(db, 'weather', io.BytesIO(b'{"n": 1}\n' * 3), batch_size=2)
    assert len(next(results)) == 2
    with pytest.raises(OSError):
        next(results)
    monkeypatch.undo()
    assert len(stored(db)) == 2


def test_threads_stream_into_one_store(db):
    def work():
        list(insert_stream(db, 'weather', io.BytesIO(b'{"n": 1}\n' * 200)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stored(db)) == 600


def test_byte_order_mark(db):
    run(db, b'\xef\xbb\xbf{"temp": 1}\n')
    assert stored(db) == [{'temp': 1}]





@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=JSON_DATA, ascii_only=st.booleans())
def test_any_json_line_is_stored_as_written(db, data, ascii_only):
    line = json.dumps(data, ensure_ascii=ascii_only)
    batches = list(insert_stream(db, 'anything', io.BytesIO(line.encode() + b'\n')))
    results = [result for batch in batches for result in batch]
    # An array is one record per element.
    expected = data if isinstance(data, list) else [data]
    assert [db.find('anything', r.id, parse=False)['data'] for r in results] == expected
