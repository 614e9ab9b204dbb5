"""Record store speed, side by side with panoptes-utils 0.2.29's file store.

Run: pytest tests/benchmarks/test_database.py --benchmark-only

- db-cli-insert: `panoptes db insert` of a 100k-line NDJSON stream into sqlite,
  a whole process per round (target >= 20,000 records/s).
- db-find-1M: find one id among 1,000,000 sqlite records (target <= 5 ms).
- db-file-insert: 1,000 single-record inserts with the file store, ours and
  0.2.29's, alternated round by round (target: ours >= 5x as many per second).
- db-find-20k: find one id among 20,000 records, 0.2.29's file store before each
  round of ours.
- db-sync-1M: `db sync` of 1,000,000 sqlite records into the local PostgreSQL
  (target >= 50,000 records/s).
- db-find-1M-postgres: find one id among 1M on postgres, as a whole `panoptes`
  process minus its start-up (target <= 5 ms), and in process.
- db-cli-insert: the same 100k lines into postgres, beside sqlite.
- db-where, db-file-limit, db-file-find-id: at 10k, 100k and 1M records,
  `--where` inside SQLite, `--limit 1` from the end of a file store, and find by
  id in a file store, ours and 0.2.29's in turn on the same file.

Rates are in each benchmark's extra_info (records_per_s or finds_per_s, per_item_ms).
"""

import itertools
import json
import random
import subprocess
import textwrap

import pytest

from benchmarks.conftest import alternate, ours_bin
from panoptes_cli.database import PanFileDB, PanSQLiteDB

RECORD = {'temp': 12.5, 'humidity': 40, 'safe': True, 'sky': 'clear',
          'wind': {'speed': 3.2, 'dir': 'NW'}}
STREAM_LINES = 100_000
MILLION = 1_000_000
INSERTS_PER_ROUND = 1000
FINDS_PER_ROUND = 20

# Drives the 0.2.29 file store in its own venv through its public API:
# "insert N" does N inserts, "fill N" stores N records, "find K" finds K
# random stored ids; each answers one line when done.
BASELINE_WORKER = textwrap.dedent("""
    import random, sys
    from panoptes.utils.database import PanDB

    db = PanDB(db_type='file', db_name='panoptes')
    record = %r
    ids = []
    for line in sys.stdin:
        command, count = line.split()
        count = int(count)
        if command == 'insert':
            for _ in range(count):
                db.insert('inserts', record)
        elif command == 'fill':
            ids = [db.insert('weather', dict(record, n=n)) for n in range(count)]
        elif command == 'find':
            for obj_id in random.sample(ids, count):
                assert db.find('weather', obj_id)['_id'] == obj_id
        print('done', flush=True)
""") % (RECORD,)


@pytest.fixture
def baseline_worker(baseline_bin, tmp_path):
    python = baseline_bin('python')
    pandir = tmp_path / 'baseline-pandir'
    pandir.mkdir()
    process = subprocess.Popen([python, '-c', BASELINE_WORKER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True,
                               env={'PANDIR': str(pandir), 'PATH': '/usr/bin:/bin'})

    def call(command: str):
        process.stdin.write(command + '\n')
        process.stdin.flush()
        assert process.stdout.readline() == 'done\n'

    yield call
    process.stdin.close()
    process.wait(60)


def rate(benchmark, per_round: int, what: str = 'records') -> None:
    """Note the median rate (e.g. records_per_s) and time per item in extra_info."""
    median = benchmark.stats.stats.median
    benchmark.extra_info[f'{what}_per_s'] = round(per_round / median)
    benchmark.extra_info['per_item_ms'] = round(median / per_round * 1000, 4)


# panoptes db insert, 100k lines, sqlite.

@pytest.fixture(scope='module')
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('stream') / 'weather.ndjson'
    rng = random.Random(42)
    with open(path, 'w') as handle:
        for n in range(STREAM_LINES):
            handle.write(json.dumps(dict(RECORD, n=n, temp=round(rng.uniform(-5, 25), 2))) + '\n')
    return path


def _time_cli_insert(benchmark, stream_file, rounds: int, env=None) -> None:
    """Time `panoptes db insert` of the stream file into a new database each round."""
    panoptes = ours_bin('panoptes')
    names = (f'insert_bench_{n}' for n in itertools.count())

    def insert(db_name):
        with open(stream_file, 'rb') as stdin:
            result = subprocess.run([panoptes, 'db', 'insert', 'weather', '--db-name', db_name],
                                    stdin=stdin, stdout=subprocess.PIPE, env=env, check=True)
        assert result.stdout.count(b'\n') == STREAM_LINES

    benchmark.pedantic(insert, setup=lambda: ((next(names),), {}), rounds=rounds)
    rate(benchmark, STREAM_LINES)


@pytest.mark.benchmark(group='db-cli-insert')
def test_cli_insert_100k_sqlite(benchmark, stream_file, isolated_env):
    _time_cli_insert(benchmark, stream_file, rounds=5)


# Find one id among a million, sqlite.

@pytest.fixture(scope='module')
def million(tmp_path_factory):
    """A sqlite store of 1,000,000 weather records (built once; takes a minute)."""
    storage = tmp_path_factory.mktemp('million')
    db = PanSQLiteDB(db_name='million', storage_dir=str(storage))
    rng = random.Random(1)
    ids = []
    for start in range(0, MILLION, 10_000):
        ids += db.insert_many('weather', [dict(RECORD, n=n, temp=round(rng.uniform(-5, 25), 2))
                                          for n in range(start, start + 10_000)])
    db.insert_many('power', [{'mains': True}] * 1000)
    return storage, rng.sample(ids, 2000)


@pytest.mark.benchmark(group='db-find-1M')
def test_find_id_among_1m_sqlite(benchmark, million):
    storage, ids = million
    db = PanSQLiteDB(db_name='million', storage_dir=str(storage))
    wanted = itertools.cycle(ids)

    def find():
        obj_id = next(wanted)
        assert db.find('weather', obj_id)['_id'] == obj_id

    benchmark(find)


@pytest.mark.benchmark(group='db-find-1M')
def test_open_and_find_id_among_1m_sqlite(benchmark, million):
    """What one short-lived process pays: open the store, then find."""
    storage, ids = million
    wanted = itertools.cycle(ids)

    def open_and_find():
        obj_id = next(wanted)
        db = PanSQLiteDB(db_name='million', storage_dir=str(storage))
        assert db.find('weather', obj_id)['_id'] == obj_id
        db.close()

    benchmark(open_and_find)


# The file store's insert rate, ours and 0.2.29's (alternated round by round).

def _inserter(db):
    def inserts():
        for _ in range(INSERTS_PER_ROUND):
            db.insert('inserts', RECORD)
    return inserts


@pytest.mark.benchmark(group='db-file-insert')
def test_file_insert_against_baseline(benchmark, baseline_worker):
    baseline_s = alternate(benchmark, _inserter(PanFileDB(db_name='bench')),
                           lambda: baseline_worker(f'insert {INSERTS_PER_ROUND}'), rounds=10)
    rate(benchmark, INSERTS_PER_ROUND)
    benchmark.extra_info['baseline_records_per_s'] = round(INSERTS_PER_ROUND / baseline_s)


@pytest.mark.benchmark(group='db-file-insert')
def test_sqlite_insert_ours(benchmark):
    benchmark.pedantic(_inserter(PanSQLiteDB(db_name='bench')), rounds=10, warmup_rounds=1)
    rate(benchmark, INSERTS_PER_ROUND)


# Find one id among 20k: 0.2.29's file store (a scan) before each round of ours.

def _fill(db, count=20_000):
    ids = []
    for start in range(0, count, 5000):
        ids += db.insert_many('weather', [dict(RECORD, n=n) for n in range(start, start + 5000)])
    return ids


@pytest.mark.parametrize('db_class', [PanFileDB, PanSQLiteDB])
@pytest.mark.benchmark(group='db-find-20k')
def test_find_id_among_20k_against_baseline(benchmark, baseline_worker, db_class):
    baseline_worker('fill 20000')
    db = db_class(db_name='bench')
    ids = _fill(db)

    def finds():
        for obj_id in random.sample(ids, FINDS_PER_ROUND):
            assert db.find('weather', obj_id)['_id'] == obj_id

    baseline_s = alternate(benchmark, finds, lambda: baseline_worker(f'find {FINDS_PER_ROUND}'),
                           rounds=15)
    rate(benchmark, FINDS_PER_ROUND, 'finds')
    benchmark.extra_info['baseline_finds_per_s'] = round(FINDS_PER_ROUND / baseline_s)


# Issue 15: the fleet's PostgreSQL store.

def _sync_all(source, url, schema, unit='PAN001'):
    from panoptes_cli.database.postgres import PanPostgresDB
    from panoptes_cli.database.sync import sync

    PanPostgresDB.permanently_erase_database(schema, url=url)
    last = list(sync(source, PanPostgresDB(schema, url=url), unit))[-1]
    assert last.complete
    return last


@pytest.mark.benchmark(group='db-sync-1M')
def test_sync_1m_sqlite_to_postgres(benchmark, million, postgres_url):
    """Target >= 50,000 records/s: the whole store, marks reset each round."""
    storage, _ids = million
    source = PanSQLiteDB(db_name='million', storage_dir=str(storage))
    rounds = itertools.count()

    def setup():
        return (f'sync_bench_{next(rounds)}',), {}

    def run(schema):
        # Each round is a new target: nothing sent to it yet.
        assert _sync_all(source, postgres_url, schema).sent == MILLION + 1000

    benchmark.pedantic(run, setup=setup, rounds=2)
    rate(benchmark, MILLION + 1000)


@pytest.fixture(scope='module')
def million_on_postgres(million, postgres_url):
    storage, ids = million
    _sync_all(PanSQLiteDB(db_name='million', storage_dir=str(storage)), postgres_url,
              'million_pg')
    return ids


@pytest.mark.benchmark(group='db-find-1M-postgres')
def test_find_id_among_1m_postgres_process(benchmark, million_on_postgres, postgres_url):
    """Target <= 5 ms: `panoptes db find weather ID` minus the same process's start-up.

    Start-up here is the same command on an empty schema (same imports, same
    connection, same schema check): the difference is the lookup among 1M.
    Rounds alternate the two commands.
    """
    import os
    import statistics
    import time

    from panoptes_cli.database.postgres import PanPostgresDB

    PanPostgresDB('empty_pg', url=postgres_url)
    panoptes = ours_bin('panoptes')
    env = dict(os.environ, PANOPTES_DB_TYPE='postgres', PANOPTES_DB_URL=postgres_url)
    wanted = itertools.cycle(million_on_postgres)
    full, empty = [], []

    def both():
        obj_id = next(wanted)
        for schema, times in (('million_pg', full), ('empty_pg', empty)):
            start = time.perf_counter()
            subprocess.run([panoptes, 'db', 'find', 'weather', obj_id, '--db-name', schema],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)

    benchmark.pedantic(both, rounds=21, warmup_rounds=2)
    benchmark.extra_info['process_ms'] = round(statistics.median(full) * 1000, 2)
    benchmark.extra_info['startup_ms'] = round(statistics.median(empty) * 1000, 2)
    benchmark.extra_info['lookup_ms'] = round(
        statistics.median(f - e for f, e in zip(full, empty)) * 1000, 2)


@pytest.mark.benchmark(group='db-find-1M-postgres')
def test_find_id_among_1m_postgres_in_process(benchmark, million_on_postgres, postgres_url):
    from panoptes_cli.database.postgres import PanPostgresDB

    db = PanPostgresDB('million_pg', url=postgres_url)
    wanted = itertools.cycle(million_on_postgres)

    def find():
        obj_id = next(wanted)
        assert db.find('weather', obj_id, parse=False)['_id'] == obj_id

    benchmark(find)


@pytest.mark.benchmark(group='db-cli-insert')
def test_cli_insert_100k_postgres(benchmark, stream_file, postgres_url):
    """`panoptes db insert` of the same 100k lines into PostgreSQL (beside sqlite's)."""
    import os

    env = dict(os.environ, PANOPTES_DB_TYPE='postgres', PANOPTES_DB_URL=postgres_url)
    _time_cli_insert(benchmark, stream_file, rounds=3, env=env)


# Issue 13: queries answered by the store, at 10k, 100k and 1M records.

SIZES = [10_000, 100_000, MILLION]


@pytest.fixture(scope='module')
def sized_stores(tmp_path_factory):
    """sqlite and file stores of each size (the file one in panoptes-utils' layout).

    Gives (PANDIR, the ids in the file store).
    """
    cache = {}

    def get(size):
        if size not in cache:
            pandir = tmp_path_factory.mktemp(f'sized{size}')
            rng = random.Random(size)
            ids = []
            sqlite = PanSQLiteDB(db_name='panoptes', storage_dir=str(pandir / 'sqlite_store'))
            files = PanFileDB(db_name='panoptes', storage_dir=str(pandir / 'json_store'))
            for start in range(0, size, 10_000):
                batch = [dict(RECORD, n=n, temp=round(rng.uniform(-5, 25), 2))
                         for n in range(start, min(size, start + 10_000))]
                sqlite.insert_many('weather', batch)
                ids += files.insert_many('weather', batch)
            cache[size] = pandir, ids
        return cache[size]

    return get


def _benchmark_find_process(benchmark, pandir, *args):
    """Time `panoptes db find weather ARGS...` as a whole process on the store in PANDIR."""
    import os

    argv = [ours_bin('panoptes'), 'db', 'find', 'weather', *args]
    env = dict(os.environ, PANDIR=str(pandir))

    def once():
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)

    benchmark.pedantic(once, rounds=7, warmup_rounds=1)


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.benchmark(group='db-where')
def test_where_sqlite_process(benchmark, sized_stores, size):
    """`find --where temp>24.9 -n 10` on sqlite, run inside SQLite (0.2.29 has no --where)."""
    pandir, _ids = sized_stores(size)
    _benchmark_find_process(benchmark, pandir, '--where', 'temp>24.9', '--limit', '10')


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.benchmark(group='db-file-limit')
def test_limit_1_file_store_process(benchmark, sized_stores, size):
    """`find --limit 1 --db-type file`: read from the end of the file (0.2.29 has no limit)."""
    pandir, _ids = sized_stores(size)
    _benchmark_find_process(benchmark, pandir, '--limit', '1', '--db-type', 'file')


BASELINE_FINDER = textwrap.dedent("""
    import sys
    from panoptes.utils.database import PanDB

    db = PanDB(db_type='file', db_name='panoptes')
    for line in sys.stdin:
        assert db.find('weather', line.strip())['_id'] == line.strip()
        print('done', flush=True)
""")


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.benchmark(group='db-file-find-id')
def test_find_id_file_store_alternating(benchmark, sized_stores, baseline_bin, size):
    """Find one id in the same file, ours and 0.2.29's, round by round (in process each)."""
    import statistics
    import time

    pandir, ids = sized_stores(size)
    ours = PanFileDB(db_name='panoptes', storage_dir=str(pandir / 'json_store'))
    baseline = subprocess.Popen([baseline_bin('python'), '-c', BASELINE_FINDER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={'PANDIR': str(pandir), 'PATH': '/usr/bin:/bin'})
    rng = random.Random(size)
    our_times, their_times = [], []

    def both():
        obj_id = rng.choice(ids)
        start = time.perf_counter()
        assert ours.find('weather', obj_id, parse=False)['_id'] == obj_id
        our_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        baseline.stdin.write(obj_id + '\n')
        baseline.stdin.flush()
        assert baseline.stdout.readline() == 'done\n'
        their_times.append(time.perf_counter() - start)

    try:
        benchmark.pedantic(both, rounds=15 if size < MILLION else 5, warmup_rounds=1)
    finally:
        baseline.stdin.close()
        baseline.wait(60)
    ours_ms, theirs_ms = statistics.median(our_times) * 1000, statistics.median(their_times) * 1000
    benchmark.extra_info.update(ours_ms=round(ours_ms, 2), baseline_ms=round(theirs_ms, 2),
                                speedup=round(theirs_ms / ours_ms, 2))
