"""The JSON-lines file store: panoptes-utils' layout, crashes, atomic current records."""

import errno
import json
import os
from pathlib import Path

import pytest

from panoptes_cli.database import PanDB, PanFileDB


@pytest.fixture
def db():
    return PanFileDB(db_name='panoptes_testing')


def collection_file(db, name='weather') -> Path:
    return Path(db.storage_dir, f'{name}.json')


def test_layout(db, isolated_env):
    assert Path(db.storage_dir) == isolated_env / 'json_store' / 'panoptes_testing'
    first = db.insert('weather', {'temp': 1})
    second = db.insert_current('weather', {'temp': 2})
    lines = collection_file(db).read_text().splitlines()
    assert [json.loads(line)['_id'] for line in lines] == [first, second]
    assert json.loads(lines[0]) == {'_id': first, 'type': 'weather',
                                    'date': json.loads(lines[0])['date'], 'data': {'temp': 1}}
    current = Path(db.storage_dir, 'current_weather.json').read_text()
    assert current == lines[1] + '\n'
    assert sorted(p.name for p in Path(db.storage_dir).iterdir()) == [
        'current_weather.json', 'weather.json']


def test_storage_dir(isolated_env):
    db = PanFileDB(db_name='panoptes_testing', storage_dir='elsewhere')
    db.insert('weather', {'temp': 1})
    assert (isolated_env / 'elsewhere' / 'panoptes_testing' / 'weather.json').exists()


def test_reads_a_store_written_by_panoptes_utils(db):
    # Lines as panoptes-utils 0.2.29 writes them: other key order, its
    # insert_current wrapping a record in another.
    old = [
        {'_id': 'c15f25f7-fa73-4462-b32f-e31757a233d7', 'data': {'temp': 12.5, 'ha': '42 deg'},
         'type': 'weather', 'date': '2023-11-23T19:35:10.774'},
        {'_id': 'f431e593-15a4-4125-8c81-28ed4aa7fa1f',
         'data': {'_id': 'c15f25f7-fa73-4462-b32f-e31757a233d7', 'data': {'temp': 12.5},
                  'type': 'weather', 'date': '2023-11-23T19:35:10.774'},
         'type': 'weather', 'date': '2023-11-23T19:35:10.776'},
    ]
    collection_file(db).write_text(''.join(json.dumps(r) + '\n' for r in old))
    Path(db.storage_dir, 'current_weather.json').write_text(json.dumps(old[0]) + '\n')
    found = db.find('weather', 'c15f25f7-fa73-4462-b32f-e31757a233d7')
    assert found['data']['ha'].value == 42
    # The wrapped record comes out unwrapped (issue 13), by either id, in queries too.
    assert db.find('weather', 'f431e593-15a4-4125-8c81-28ed4aa7fa1f', parse=False) == old[1]['data']
    assert db.get_current('weather')['_id'] == old[0]['_id']
    assert list(db.find('weather', since='2023-11-23T19:35:10.775', parse=False)) == []
    assert list(db.find('weather', where=['temp=12.5'], parse=False))[0] == old[1]['data']
    # New records go on after the old ones.
    new = db.insert('weather', {'temp': 3})
    assert next(db.find('weather'))['_id'] == new


def test_torn_last_line_is_skipped_then_healed(db, logged_warnings):
    ids = [db.insert('weather', {'temp': t}) for t in range(3)]
    path = collection_file(db)
    whole = path.read_bytes()
    # A crash in the middle of writing the last record.
    path.write_bytes(whole[:-25])
    assert [r['_id'] for r in db.find('weather')] == ids[1::-1]
    assert db.find('weather', ids[0])['data'] == {'temp': 0}
    assert db.find('weather', ids[2]) is None
    assert any('line 3: not a whole JSON record' in m for m in logged_warnings)
    # The next record starts on a line of its own and is readable.
    fourth = db.insert('weather', {'temp': 3})
    lines = path.read_bytes().split(b'\n')
    assert lines[2] == whole.split(b'\n')[2][:-24] and lines[4] == b''
    assert [r['_id'] for r in db.find('weather')] == [fourth, ids[1], ids[0]]
    assert db.find('weather', fourth)['data'] == {'temp': 3}


def test_garbage_lines_are_skipped(db, logged_warnings):
    first = db.insert('weather', {'temp': 1})
    with open(collection_file(db), 'a') as handle:
        handle.write('\n\n{"half": \n[1, 2]\n')
    second = db.insert('weather', {'temp': 2})
    assert [r['_id'] for r in db.find('weather')] == [second, first]
    assert len(logged_warnings) == 2


def test_truncated_to_nothing(db):
    db.insert('weather', {'temp': 1})
    collection_file(db).write_bytes(b'')
    assert list(db.find('weather')) == []
    assert db.find('weather', 'x') is None


def test_corrupt_current_record(db, logged_warnings):
    Path(db.storage_dir, 'current_weather.json').write_text('{"_id": "abc", "da')
    assert db.get_current('weather') is None
    assert logged_warnings


def test_current_is_replaced_atomically(db):
    db.insert_current('weather', {'temp': 1})
    path = Path(db.storage_dir, 'current_weather.json')
    with open(path) as old_reader:
        db.insert_current('weather', {'temp': 2})
        # A reader of the old file still sees the whole old record.
        assert json.loads(old_reader.read())['data'] == {'temp': 1}
    assert db.get_current('weather')['data'] == {'temp': 2}
    assert not list(Path(db.storage_dir).glob('.*'))


def test_failed_write_leaves_nothing(db, monkeypatch):
    db.insert('weather', {'temp': 1})
    before = collection_file(db).read_bytes()
    real_write = os.write
    calls = []

    def disk_full(fd, data):
        calls.append(data)
        if len(calls) == 1:
            return real_write(fd, data[:10])
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'write', disk_full)
    with pytest.raises(OSError, match='No space'):
        db.insert_many('weather', [{'temp': 2}, {'temp': 3}])
    monkeypatch.undo()
    assert collection_file(db).read_bytes() == before


def test_failed_current_leaves_no_temp_file(db, monkeypatch):
    db.insert_current('weather', {'temp': 1})

    def fail(*args):
        raise OSError(errno.EROFS, 'Read-only file system')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(OSError):
        db.insert_current('weather', {'temp': 2}, store_permanently=False)
    monkeypatch.undo()
    assert db.get_current('weather')['data'] == {'temp': 1}
    assert sorted(p.name for p in Path(db.storage_dir).iterdir()) == [
        'current_weather.json', 'weather.json']


def test_erase_removes_the_folder(db):
    db.insert_current('weather', {'temp': 1})
    PanDB.permanently_erase_database('file', 'panoptes_testing', really='Yes', dangerous='Totally')
    assert not Path(db.storage_dir).exists()
    # Erasing what is not there is fine.
    PanFileDB.permanently_erase_database('panoptes_testing')


@pytest.mark.parametrize('block_size', [7, 64, 1000, 1 << 20])
def test_find_by_id_across_blocks(db, monkeypatch, logged_warnings, block_size):
    monkeypatch.setattr('panoptes_cli.database.file._BLOCK_SIZE', block_size)
    ids = [db.insert('weather', {'n': n, 'pad': 'x' * (n * 37 % 300)}) for n in range(40)]
    # An id that also appears in another record's data is not that record.
    decoy = db.insert('weather', {'note': f'see {ids[5]}'})
    with open(collection_file(db), 'ab') as handle:
        handle.write(b'{"_id": "torn')
    for n, obj_id in enumerate(ids):
        assert db.find('weather', obj_id)['data']['n'] == n
    assert db.find('weather', decoy)['data'] == {'note': f'see {ids[5]}'}
    assert db.find('weather', 'torn') is None
    assert logged_warnings == [(f'{collection_file(db)} line 42: not a whole JSON record '
                                '(a write cut short by a crash?); skipped')]


def test_newest_first_from_the_end_and_after_out_of_order_inserts(db):
    ids = db.insert_many('weather', [{'n': n} for n in range(5)])
    assert not Path(db.storage_dir, 'weather.json.unordered').exists()
    assert [r['_id'] for r in db.find('weather', limit=2)] == [ids[4], ids[3]]
    # A record with an older date of its own: the file is no longer in date order.
    db.insert('weather', {'type': 'weather', 'date': '2020-01-01T00:00:00', 'data': {'n': 'old'}})
    assert Path(db.storage_dir, 'weather.json.unordered').exists()
    assert [r['data']['n'] for r in db.find('weather', limit=2)] == [4, 3]
    assert [r['data']['n'] for r in db.find('weather', until='2021-01-01')] == ['old']
    PanFileDB.permanently_erase_database('panoptes_testing')
    assert not Path(db.storage_dir).exists()


def test_limit_reads_only_the_end_of_an_ordered_file(db, logged_warnings, monkeypatch):
    monkeypatch.setattr('panoptes_cli.database.file._BLOCK_SIZE', 4096)
    collection_file(db).parent.mkdir(parents=True, exist_ok=True)
    collection_file(db).write_text('not a record\n{"_id": "a", "type": "weather", '
                                   '"date": "2020-01-01T00:00:00.000", "data": {"n": -1}}\n')
    db.insert_many('weather', [{'n': n} for n in range(1000)])
    # The bad first line is never reached: only the end of the file is read.
    assert [r['data']['n'] for r in db.find('weather', limit=3)] == [999, 998, 997]
    assert logged_warnings == []
    assert len(list(db.find('weather'))) == 1001
    assert len(logged_warnings) == 1


def test_prune_keeps_sync_marks_on_the_same_records(db):
    db.insert('weather', {'type': 'weather', 'date': '2020-01-01T00:00:00', 'data': {'n': 0}})
    db.insert_many('weather', [{'n': n} for n in range(1, 4)])
    batches = list(db.unsent('target', 2))
    db.mark_sent('target', batches[0][1])          # records 0 and 1 sent
    assert db.prune('2021-01-01') == {'weather': 1}
    (rows, _mark), = list(db.unsent('target', 10))
    assert [json.loads(text)['n'] for *_key, text in rows] == [2, 3]
