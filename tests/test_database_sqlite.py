"""The SQLite store: where it lives, WAL, indexes, waiting for other writers, forks."""

import json
import multiprocessing
import sqlite3
import threading
import time

import pytest

from panoptes_cli.database import DatabaseError, PanDB, PanSQLiteDB


@pytest.fixture
def db():
    return PanSQLiteDB(db_name='panoptes_testing')


def test_location_and_wal(db, isolated_env):
    assert db.db_file == isolated_env / 'sqlite_store' / 'panoptes_testing.sqlite'
    db.insert('weather', {'temp': 1})
    with sqlite3.connect(db.db_file) as other:
        assert other.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
        assert other.execute('SELECT collection, id FROM records').fetchall() == [
            ('weather', db.find('weather', limit=1).__next__()['_id'])]


def test_storage_dir(isolated_env):
    db = PanSQLiteDB(db_name='panoptes_testing', storage_dir='elsewhere')
    assert db.db_file == isolated_env / 'elsewhere' / 'panoptes_testing.sqlite'


def test_queries_use_the_indexes(db):
    connection = sqlite3.connect(db.db_file)

    def plan(sql, *params):
        return ' '.join(row[-1] for row in connection.execute(f'EXPLAIN QUERY PLAN {sql}', params))

    assert 'INDEX records_by_id' in plan(
        'SELECT record FROM records WHERE collection = ? AND id = ? ORDER BY seq LIMIT 1', 'w', 'x')
    by_date = plan('SELECT record FROM records WHERE collection = ? AND date >= ? '
                   'ORDER BY date DESC, seq DESC LIMIT 5', 'w', '2024')
    assert 'INDEX records_by_date' in by_date and 'TEMP B-TREE' not in by_date


def test_waits_for_another_writer(db):
    other = sqlite3.connect(db.db_file, isolation_level=None, check_same_thread=False)
    other.execute('BEGIN IMMEDIATE')
    other.execute("INSERT INTO current VALUES ('weather', '{}')")
    releaser = threading.Timer(0.3, other.execute, ['ROLLBACK'])
    releaser.start()
    started = time.monotonic()
    obj_id = db.insert('weather', {'temp': 1})
    assert time.monotonic() - started >= 0.2
    assert db.find('weather', obj_id)['data'] == {'temp': 1}
    releaser.join()
    other.close()


def test_gives_up_after_the_timeout(isolated_env):
    db = PanSQLiteDB(db_name='panoptes_testing', timeout=0.1)
    other = sqlite3.connect(db.db_file, isolation_level=None)
    other.execute('BEGIN IMMEDIATE')
    with pytest.raises(DatabaseError, match=r'panoptes_testing\.sqlite: database is locked '
                                            r'\(another process held it for over 0\.1 s\)'):
        db.insert('weather', {'temp': 1})
    other.execute('ROLLBACK')
    # Nothing half done: the store still works.
    assert db.find('weather', db.insert('weather', {'temp': 2}))['data'] == {'temp': 2}


def test_a_reader_does_not_block_writers(db):
    db.insert_many('weather', [{'n': n} for n in range(50)])
    reading = db.find('weather')
    next(reading)
    writer = PanSQLiteDB(db_name='panoptes_testing', timeout=0.5)
    writer.insert('weather', {'n': 50})
    assert len(list(reading)) == 49


def test_newer_schema_is_refused(db):
    with sqlite3.connect(db.db_file) as other:
        other.execute('PRAGMA user_version=99')
    with pytest.raises(DatabaseError, match='newer panoptes-cli'):
        PanSQLiteDB(db_name='panoptes_testing')


def test_not_a_database(isolated_env):
    path = isolated_env / 'sqlite_store' / 'panoptes_testing.sqlite'
    path.parent.mkdir()
    path.write_text('this is not a database, it is a text file that is long enough' * 20)
    with pytest.raises(DatabaseError, match='not a database'):
        PanSQLiteDB(db_name='panoptes_testing')


def _insert_in_child(db, queue):
    queue.put(db.insert('weather', {'from': 'child'}))


def test_usable_after_fork(db):
    db.insert('weather', {'from': 'parent'})
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    child = context.Process(target=_insert_in_child, args=(db, queue))
    child.start()
    obj_id = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert db.find('weather', obj_id)['data'] == {'from': 'child'}
    assert len(list(db.find('weather'))) == 2


def test_close_and_reopen(db):
    obj_id = db.insert('weather', {'temp': 1})
    db.close()
    assert db.find('weather', obj_id)['data'] == {'temp': 1}


def test_erase_removes_the_files(db):
    db.insert('weather', {'temp': 1})
    db.close()
    PanDB.permanently_erase_database('sqlite', 'panoptes_testing', really='Yes', dangerous='Totally')
    assert not list(db.storage_dir.iterdir())


SCHEMA_1 = """
CREATE TABLE records (seq INTEGER PRIMARY KEY, collection TEXT NOT NULL, id TEXT NOT NULL,
                      date TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX records_by_id ON records (collection, id);
CREATE INDEX records_by_date ON records (collection, date);
CREATE TABLE current (collection TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
PRAGMA user_version=1;
"""


def test_a_schema_1_store_is_migrated_in_place(isolated_env):
    path = isolated_env / 'sqlite_store' / 'panoptes_testing.sqlite'
    path.parent.mkdir()
    line = ('{"_id": "old", "type": "weather", "date": "2024-05-01T00:00:00.000", '
            '"data": {"temp": 3}}')
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA_1)
        old.execute("INSERT INTO records VALUES (7, 'weather', 'old', "
                    "'2024-05-01T00:00:00.000', ?)", (line,))
    db = PanSQLiteDB(db_name='panoptes_testing')
    assert db.find('weather', 'old', parse=False)['data'] == {'temp': 3}
    with sqlite3.connect(path) as migrated:
        assert migrated.execute('PRAGMA user_version').fetchone() == (2,)
        assert 'AUTOINCREMENT' in migrated.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'records'").fetchone()[0]
        assert migrated.execute('SELECT seq FROM records').fetchall() == [(7,)]


def test_record_numbers_are_not_reused_after_a_prune(db):
    # A sync's high-water mark is a record number: a prune must not let new records
    # take numbers below it.
    db.insert_many('weather', [{'n': n} for n in range(5)])
    (_rows, mark), = list(db.unsent('target', 100))
    db.mark_sent('target', mark)
    assert db.prune('2999-01-01') == {'weather': 5}
    db.insert('weather', {'n': 'new'})
    assert db.count_unsent('target') == 1
    (rows, _mark), = list(db.unsent('target', 100))
    assert [json.loads(text) for *_key, text in rows] == [{'n': 'new'}]
