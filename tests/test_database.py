"""Every database backend through the same suite: the manual's contract, its fixes, queries."""

import threading
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from astropy import units as u
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panoptes_cli.database import (
    PanDB,
    PanFileDB,
    PanMemoryDB,
    PanSQLiteDB,
    create_storage_obj,
    get_db_class,
)
from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.records import iso_date, parse_time_bound, storage_root
from panoptes_cli.error import IllegalValue, InvalidSerialization

# The postgres runs start a real server: the quick loop (-m "not slow") leaves them out.
BACKENDS = ['file', 'memory', 'sqlite', pytest.param('postgres', marks=pytest.mark.slow)]
TEST_DB = 'panoptes_testing'


def erase(db_type, db_name=TEST_DB):
    PanDB.permanently_erase_database(db_type, db_name, really='Yes', dangerous='Totally')


@pytest.fixture(params=BACKENDS)
def db_type(request, monkeypatch):
    if request.param == 'postgres':
        # The contract suite runs on a real server, as on the embedded stores.
        monkeypatch.setenv('PANOPTES_DB_URL', request.getfixturevalue('postgres_url'))
    return request.param


@pytest.fixture
def db(db_type):
    db = PanDB(db_type=db_type, db_name=TEST_DB)
    yield db
    erase(db_type)


def record(data, date, **extra):
    """A record-shaped dict with an explicit date, for query tests."""
    return {'type': 'weather', 'date': date, 'data': data, **extra}


# The manual's examples.

def test_factory_types():
    assert type(PanDB(db_type='file')) is PanFileDB
    assert type(PanDB('memory')) is PanMemoryDB
    assert type(PanDB(db_type='sqlite')) is PanSQLiteDB
    assert issubclass(PanSQLiteDB, AbstractPanDB)


def test_manual_current_example(db):
    assert db.get_current('safety') is None
    insert_id = db.insert_current('safety', True)
    current = db.get_current('safety')
    assert current['data'] is True
    assert current['_id'] == insert_id


def test_get_db_class():
    assert get_db_class() is PanFileDB
    assert get_db_class('memory') is PanMemoryDB
    with pytest.raises(IllegalValue, match='unsupported database type'):
        get_db_class('mongo')


def test_create_storage_obj(monkeypatch):
    monkeypatch.setenv('POCSTIME', '2020-02-02 02:02:02')
    assert create_storage_obj('weather', {'temp': 1}, 'abc') == {
        '_id': 'abc', 'type': 'weather', 'date': datetime(2020, 2, 2, 2, 2, 2), 'data': {'temp': 1}}


# Records.

def test_insert_and_find(db):
    obj_id = db.insert('weather', {'temp': 12.5, 'sky': 'clear'})
    found = db.find('weather', obj_id)
    assert set(found) == {'_id', 'type', 'date', 'data'}
    assert found['_id'] == obj_id
    assert found['type'] == 'weather'
    assert found['data'] == {'temp': 12.5, 'sky': 'clear'}
    assert isinstance(found['date'], datetime)
    assert abs(found['date'] - datetime.now(timezone.utc).replace(tzinfo=None)) < timedelta(minutes=1)


def test_date_honours_pocstime(db, monkeypatch):
    monkeypatch.setenv('POCSTIME', '1999-12-31 23:59:59')
    obj_id = db.insert('weather', {'temp': 1})
    assert db.find('weather', obj_id)['date'] == datetime(1999, 12, 31, 23, 59, 59)


def test_insert_current_stores_one_record_under_one_id(db):
    obj_id = db.insert_current('weather', {'temp': 12.5})
    in_collection = db.find('weather', obj_id)
    current = db.get_current('weather')
    assert in_collection == current
    # Not wrapped twice, as panoptes-utils 0.2.29's file store did.
    assert current['data'] == {'temp': 12.5}
    assert len(list(db.find('weather'))) == 1


def test_insert_current_not_permanently(db):
    obj_id = db.insert_current('weather', {'temp': 1}, store_permanently=False)
    assert db.get_current('weather')['_id'] == obj_id
    assert db.find('weather', obj_id) is None
    assert list(db.find('weather')) == []


def test_current_is_the_latest(db):
    db.insert_current('weather', {'temp': 1})
    second = db.insert_current('weather', {'temp': 2})
    db.insert('weather', {'temp': 3})
    assert db.get_current('weather')['_id'] == second


def test_clear_current(db):
    db.insert_current('weather', {'temp': 1})
    db.insert_current('power', {'mains': True})
    db.clear_current('weather')
    db.clear_current('weather')
    db.clear_current('never_had_one')
    assert db.get_current('weather') is None
    assert db.get_current('power')['data'] == {'mains': True}
    assert len(list(db.find('weather'))) == 1


def test_find_missing(db):
    db.insert('weather', {'temp': 1})
    assert db.find('weather', 'no-such-id') is None
    assert db.find('other', 'no-such-id') is None
    assert list(db.find('other')) == []


def test_find_needs_the_exact_id(db):
    obj_id = db.insert('weather', {'note': 'abc'})
    assert db.find('weather', obj_id[:8]) is None
    assert db.find('weather', 'abc') is None


def test_scalar_and_list_data(db):
    ids = [db.insert('things', value) for value in (True, 'a string', 42, None, [1, 2])]
    assert [db.find('things', obj_id)['data'] for obj_id in ids] == [True, 'a string', 42, None, [1, 2]]


def test_quantities_and_times_round_trip(db):
    when = datetime(2024, 5, 1, 3, 4, 5, 678000)
    obj_id = db.insert('mount', {'ha': 42 * u.deg, 'when': when, 'note': '12.5 C'})
    data = db.find('mount', obj_id)['data']
    assert data['ha'] == 42 * u.deg
    assert data['when'] == when
    assert data['note'] == '12.5 C'
    raw = db.find('mount', obj_id, parse=False)
    assert raw['data'] == {'ha': '42.0 deg', 'when': '2024-05-01T03:04:05.678', 'note': '12.5 C'}
    assert isinstance(raw['date'], str)


def test_unicode_and_newlines_in_data(db):
    obj_id = db.insert('log', {'msg': 'dôme fermé\nline two\u2028'})
    assert db.find('log', obj_id)['data'] == {'msg': 'dôme fermé\nline two\u2028'}


def test_non_serializable_names_the_key_and_writes_nothing(db):
    with pytest.raises(InvalidSerialization, match=r"'data\.camera\.handle'"):
        db.insert('weather', {'camera': {'handle': object()}})
    with pytest.raises(InvalidSerialization):
        db.insert_current('weather', {'bad': object()})
    with pytest.raises(InvalidSerialization, match=r"'data\.bad'"):
        db.insert_many('weather', [{'temp': 1}, {'bad': {1, object()}}, {'temp': 2}])
    assert list(db.find('weather')) == []
    assert db.get_current('weather') is None


def test_insert_many(db):
    ids = db.insert_many('weather', [{'temp': t} for t in range(5)], current=True)
    assert len(set(ids)) == 5
    assert [db.find('weather', obj_id)['data']['temp'] for obj_id in ids] == list(range(5))
    assert db.get_current('weather')['_id'] == ids[-1]
    assert db.insert_many('weather', []) == []


def test_record_shaped_objects_are_kept_not_wrapped(db):
    given = {'_id': 'my-id', 'type': 'elsewhere', 'date': '2024-05-01T03:04:05.678',
             'data': {'temp': 1}}
    assert db.insert('weather', given) == 'my-id'
    found = db.find('weather', 'my-id', parse=False)
    assert found == {'_id': 'my-id', 'type': 'weather', 'date': '2024-05-01T03:04:05.678',
                     'data': {'temp': 1}}
    # Without an _id it gets a new one; the date is normalised to UTC.
    obj_id = db.insert('weather', record({'temp': 2}, '2024-05-01T05:04:05+02:00'))
    assert db.find('weather', obj_id, parse=False)['date'] == '2024-05-01T03:04:05.000'
    # A dict with other keys too is data, and is wrapped.
    wrapped = db.insert('weather', {'type': 't', 'date': 'd', 'data': 1, 'other': 2})
    assert db.find('weather', wrapped)['data'] == {'type': 't', 'date': 'd', 'data': 1, 'other': 2}


@pytest.mark.parametrize('bad', [{'_id': 5}, {'_id': ''}, {'date': 'yesterday'}])
def test_bad_record_fields(db, bad):
    with pytest.raises(IllegalValue):
        db.insert('weather', {**record({'temp': 1}, '2024-05-01T00:00:00'), **bad})


def test_duplicate_ids_find_the_first(db):
    db.insert('weather', record({'n': 1}, '2024-05-01T00:00:00', _id='same'))
    db.insert('weather', record({'n': 2}, '2024-05-02T00:00:00', _id='same'))
    assert db.find('weather', 'same')['data'] == {'n': 1}
    assert len(list(db.find('weather'))) == 2


def test_ids_are_time_ordered_uuids(db):
    from uuid import UUID

    ids = db.insert_many('weather', [{}] * 3)
    assert all(UUID(obj_id).version == 7 for obj_id in ids)


# Queries beyond the manual.

@pytest.fixture
def week(db):
    """Seven daily records, 2024-05-01 .. 2024-05-07, inserted out of order."""
    for day in (3, 1, 7, 2, 6, 4, 5):
        db.insert('weather', record({'day': day, 'temp': 10.0 + day, 'safe': day % 2 == 0,
                                     'wind': {'dir': 'NW' if day < 4 else 'SE'},
                                     'flag': None if day == 5 else 1},
                                    f'2024-05-0{day}T12:00:00'))
    return db


def days(records):
    return [r['data']['day'] for r in records]


def test_query_is_a_generator_newest_first(week):
    found = week.find('weather')
    assert isinstance(found, types.GeneratorType)
    assert days(found) == [7, 6, 5, 4, 3, 2, 1]


def test_query_since_until(week):
    assert days(week.find('weather', since='2024-05-03T12:00:00')) == [7, 6, 5, 4, 3]
    assert days(week.find('weather', until='2024-05-03T12:00:00')) == [2, 1]
    assert days(week.find('weather', since='2024-05-02', until='2024-05-05')) == [4, 3, 2]
    aware = datetime(2024, 5, 6, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert days(week.find('weather', since=aware)) == [7, 6]
    from astropy.time import Time

    assert days(week.find('weather', until=Time('2024-05-02 12:00:01'))) == [2, 1]


def test_query_relative_since(week, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2024-05-07 13:00:00')
    assert days(week.find('weather', since='25h')) == [7, 6]
    assert days(week.find('weather', since='1w')) == [7, 6, 5, 4, 3, 2, 1]


def test_query_where(week):
    assert days(week.find('weather', where={'temp': 13})) == [3]
    assert days(week.find('weather', where=['temp=13.0'])) == [3]
    assert days(week.find('weather', where=['safe=true'])) == [6, 4, 2]
    assert days(week.find('weather', where=['wind.dir=NW', 'safe=false'])) == [3, 1]
    assert days(week.find('weather', where='flag=null')) == [5]
    # true is not 1, and a missing field matches nothing.
    assert days(week.find('weather', where=['flag=true'])) == []
    assert days(week.find('weather', where=['safe=1'])) == []
    assert days(week.find('weather', where=['missing=1'])) == []
    assert days(week.find('weather', where=['wind.dir.deeper=1'])) == []
    assert days(week.find('weather', where=['day="3"'])) == []


def test_query_limit(week):
    assert days(week.find('weather', limit=2)) == [7, 6]
    assert days(week.find('weather', where=['safe=false'], limit=2)) == [7, 5]
    assert days(week.find('weather', limit=0)) == []
    with pytest.raises(IllegalValue):
        week.find('weather', limit=-1)


def test_query_combined_with_id(week):
    obj_id = next(week.find('weather', where=['day=3']))['_id']
    assert week.find('weather', obj_id, where=['day=3'])['data']['day'] == 3
    assert week.find('weather', obj_id, where=['day=4']) is None
    assert week.find('weather', obj_id, since='2024-05-04') is None


@pytest.fixture
def mixed(db):
    """Records whose fields differ in type and presence, for comparisons."""
    db.insert_many('weather', [
        {'n': 1, 'temp': 25, 'status': 'ok', 'safe': True},
        {'n': 2, 'temp': 20.0, 'status': 'rain', 'safe': False},
        {'n': 3, 'temp': 4.5, 'status': 'ok'},
        {'n': 4, 'temp': '30', 'status': 'ok'},
        {'n': 5, 'status': 'snow', 'wind': {'speed': 12}},
        {'n': 6, 'temp': True, 'wind': {'speed': 3.5}},
        {'n': 7, 'temp': None, 'status': None},
        {'n': 8, 'temp': [25], 'status': {'ok': True}},
    ])
    return db


@pytest.mark.parametrize('where, expected', [
    (['temp>20'], [1]),
    (['temp>=20'], [1, 2]),
    (['temp<=5'], [3]),
    (['temp<5'], [3]),
    (['temp=20'], [2]),
    (['temp!=25'], [2, 3, 4, 6, 7, 8]),
    (['status!=ok'], [2, 5, 7, 8]),
    (['status=ok'], [1, 3, 4]),
    (['temp>2'], [1, 2, 3]),
    (['temp>25x'], [4]),
    (['status<p'], [3, 4, 1]),
    (['safe!=true'], [2]),
    (['temp=true'], [6]),
    (['temp=null'], [7]),
    (['temp!=null'], [1, 2, 3, 4, 6, 8]),
    (['wind.speed>=3.5'], [5, 6]),
    (['temp>=4.5', 'status!=rain'], [1, 3]),
    ({'temp': [25]}, [8]),
])
def test_query_comparisons_agree_on_every_store(mixed, where, expected):
    # The rules of panoptes_cli.database.query, whether SQL or Python checks them.
    found = [r['data']['n'] for r in mixed.find('weather', where=where, parse=False)]
    assert sorted(found) == sorted(expected)


def test_query_comparison_with_limit(mixed):
    found = list(mixed.find('weather', where=['status=ok'], limit=2, parse=False))
    assert len(found) == 2 and all(r['data']['status'] == 'ok' for r in found)


@pytest.mark.parametrize('bad', [['temp>null'], ['temp<true'], ['>3'], ['temp']])
def test_bad_comparisons(db, bad):
    with pytest.raises(IllegalValue, match='condition'):
        db.find('weather', where=bad)


def test_prune(week):
    week.insert_current('power', record({'volts': 12}, '2024-05-01T00:00:00'))
    assert week.collection_names() == ['power', 'weather']
    assert week.prune('2024-05-04') == {'power': 1, 'weather': 3}
    assert days(week.find('weather')) == [7, 6, 5, 4]
    assert week.get_current('power')['data'] == {'volts': 12}
    assert week.collection_names() == ['weather']
    assert week.prune('2024-05-05', ['weather']) == {'weather': 1}
    assert week.prune('2024-05-05') == {'weather': 0}
    # New records go on being stored and found after a prune.
    obj_id = week.insert('weather', {'day': 8})
    assert week.find('weather', obj_id)['data'] == {'day': 8}
    assert next(week.find('weather', parse=False))['_id'] == obj_id


@pytest.mark.slow
def test_follow_sees_new_records(db):
    found = []
    follower = threading.Thread(target=lambda: found.extend(
        db.follow('weather', where=['temp>0'], seconds=3, parse=False)))
    follower.start()
    time.sleep(0.5)
    db.insert('weather', {'temp': 1})
    db.insert('weather', {'temp': -1})
    db.insert('other', {'temp': 5})
    db.insert_many('weather', [{'temp': 2}, {'temp': 3}])
    follower.join()
    assert [r['data']['temp'] for r in found] == [1, 2, 3]


def test_query_parse_false(week):
    first = next(week.find('weather', parse=False))
    assert first['date'] == '2024-05-07T12:00:00.000'


def test_same_date_newest_inserted_first(db, monkeypatch):
    monkeypatch.setattr('panoptes_cli.database.records.utc_now', lambda: datetime(2024, 1, 1))
    ids = db.insert_many('weather', [{'n': n} for n in range(3)])
    db.insert('weather', {'n': 3})
    assert [r['data']['n'] for r in db.find('weather')] == [3, 2, 1, 0]
    assert [r['_id'] for r in db.find('weather')][1:] == ids[::-1]


@pytest.mark.parametrize('bad', [{'since': 'yesterday'}, {'until': '5 parsecs'},
                                 {'where': ['temp']}, {'where': ['=1']}, {'where': {'a..b': 1}}])
def test_bad_queries(db, bad):
    with pytest.raises(IllegalValue):
        db.find('weather', **bad)


# Names and stores.

BAD_NAMES = ['', '.', '..', '../../etc/passwd', '/etc/passwd', 'a/b', 'a\\b', 'sp ace', 'tab\t',
             'x' * 201, 'current_weather', 'nul\0', None, 42]


@pytest.mark.parametrize('name', BAD_NAMES)
def test_bad_collection_names(db, name, tmp_path):
    before = sorted(tmp_path.rglob('*'))
    for call in (lambda: db.insert(name, {'a': 1}), lambda: db.insert_current(name, {'a': 1}),
                 lambda: db.find(name, 'x'), lambda: db.find(name), lambda: db.get_current(name),
                 lambda: db.clear_current(name), lambda: db.insert_many(name, [{'a': 1}])):
        with pytest.raises(IllegalValue, match='collection name'):
            call()
    assert sorted(tmp_path.rglob('*')) == before


@pytest.mark.parametrize('name', [n for n in BAD_NAMES if n not in ('current_weather', None)])
def test_bad_db_names(db_type, name, tmp_path):
    with pytest.raises(IllegalValue, match='database name'):
        PanDB(db_type=db_type, db_name=name)
    assert not (tmp_path.parent / 'etc').exists()


def test_traversal_never_touches_outside(tmp_path, db):
    outside = tmp_path / 'etc' / 'passwd'
    outside.parent.mkdir()
    outside.write_text('root:x:0:0\n')
    with pytest.raises(IllegalValue):
        db.insert('../../../etc/passwd', {'a': 1})
    with pytest.raises(IllegalValue):
        PanDB.permanently_erase_database('file', '../test', really='Yes', dangerous='Totally')
    assert outside.read_text() == 'root:x:0:0\n'


def test_good_names(db):
    for name in ('weather', 'Weather-2.v1', '_x', 'a' * 200, '...x'):
        obj_id = db.insert(name, {'a': 1})
        assert db.find(name, obj_id)['data'] == {'a': 1}


def test_db_name_is_passed_on(db_type):
    # panoptes-utils 0.2.29's factory dropped db_name: every store was 'panoptes'.
    one = PanDB(db_type=db_type, db_name='panoptes_test_one')
    two = PanDB(db_type=db_type, db_name='panoptes_test_two')
    assert (one.db_name, two.db_name) == ('panoptes_test_one', 'panoptes_test_two')
    obj_id = one.insert('weather', {'a': 1})
    assert two.find('weather', obj_id) is None
    assert list(two.find('weather')) == []
    erase(db_type, 'panoptes_test_one')
    erase(db_type, 'panoptes_test_two')


def test_default_db_name(db_type):
    db = PanDB(db_type=db_type)
    if db_type != 'memory':
        assert db.db_name == 'panoptes'


def test_a_second_instance_sees_the_same_store(db, db_type):
    obj_id = db.insert_current('weather', {'a': 1})
    again = PanDB(db_type=db_type, db_name=TEST_DB)
    assert again.find('weather', obj_id)['data'] == {'a': 1}
    assert again.get_current('weather')['_id'] == obj_id


def test_memory_get_or_create_shares_by_name():
    first = PanMemoryDB.get_or_create(db_name='test_shared')
    assert PanDB(db_type='memory', db_name='test_shared') is first
    assert PanMemoryDB.get_or_create(db_name='test_other') is not first
    erase('memory', 'test_shared')
    assert PanDB(db_type='memory', db_name='test_shared') is not first


@pytest.mark.parametrize('kwargs', [
    {'db_name': 'panoptes', 'really': 'Yes', 'dangerous': 'Totally'},
    {'db_name': None, 'really': 'Yes', 'dangerous': 'Totally'},
    {'db_name': TEST_DB, 'really': True, 'dangerous': 'Totally'},
    {'db_name': TEST_DB, 'really': 'Yes', 'dangerous': True},
    {'db_name': TEST_DB},
])
def test_erase_guards(db, db_type, kwargs):
    obj_id = db.insert('weather', {'a': 1})
    with pytest.raises(IllegalValue):
        PanDB.permanently_erase_database(db_type, **kwargs)
    assert db.find('weather', obj_id) is not None


def test_erase(db, db_type):
    db.insert_current('weather', {'a': 1})
    keep = PanDB(db_type=db_type, db_name='panoptes_keep_me')
    kept = keep.insert('weather', {'b': 2})
    erase(db_type)
    fresh = PanDB(db_type=db_type, db_name=TEST_DB)
    assert list(fresh.find('weather')) == []
    assert fresh.get_current('weather') is None
    assert keep.find('weather', kept) is not None


def test_erase_with_storage_dir(db_type):
    kwargs = {} if db_type == 'memory' else {'storage_dir': 'elsewhere'}
    db = PanDB(db_type=db_type, db_name=TEST_DB, **kwargs)
    db.insert('weather', {'a': 1})
    PanDB.permanently_erase_database(db_type, TEST_DB, storage_dir=kwargs.get('storage_dir'),
                                     really='Yes', dangerous='Totally')
    assert list(PanDB(db_type=db_type, db_name=TEST_DB, **kwargs).find('weather')) == []


def test_threads_share_a_store(db):
    def work(n):
        for i in range(100):
            db.insert('weather', {'thread': n, 'i': i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(db.find('weather'))) == 400
    assert len(list(db.find('weather', where={'thread': 2}))) == 100


# Where stores live.

def test_storage_root_without_pandir(monkeypatch, tmp_path):
    monkeypatch.delenv('PANDIR')
    assert storage_root() == tmp_path / 'xdg-data' / 'panoptes'
    monkeypatch.delenv('XDG_DATA_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert storage_root() == tmp_path / 'home' / '.local' / 'share' / 'panoptes'
    db = PanDB(db_type='sqlite')
    assert db.db_file == tmp_path / 'home/.local/share/panoptes/sqlite_store/panoptes.sqlite'
    assert Path(PanDB(db_type='file').storage_dir) == tmp_path / 'home/.local/share/panoptes/json_store/panoptes'


def test_time_helpers():
    assert iso_date('2024-05-01T03:04:05Z') == '2024-05-01T03:04:05.000'
    assert iso_date(datetime(2024, 5, 1).date()) == '2024-05-01T00:00:00.000'
    with pytest.raises(IllegalValue, match='duration before now'):
        parse_time_bound('2 fortnights')


# Any JSON data comes back as it went in.


JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=12)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=JSON_DATA)
def test_any_json_data_round_trips(db, data):
    obj_id = db.insert('anything', data)
    assert db.find('anything', obj_id, parse=False)['data'] == data
