"""The fleet's PostgreSQL store against a real server: CLI, sync, follow, failures, migration.

The PanDB contract suite itself runs on postgres in test_database.py.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from conftest import free_port

from panoptes_cli.database import PanDB
from panoptes_cli.database.postgres import _MIGRATIONS, SCHEMA_VERSION, PanPostgresDB
from panoptes_cli.database.sync import sync, target_key
from panoptes_cli.error import DatabaseError

CENTRAL = 'fleet_test'


@pytest.fixture
def central(postgres_url, monkeypatch):
    monkeypatch.setenv('PANOPTES_DB_URL', postgres_url)
    PanPostgresDB.permanently_erase_database(CENTRAL, url=postgres_url)
    yield PanPostgresDB(CENTRAL, url=postgres_url)
    PanPostgresDB.permanently_erase_database(CENTRAL, url=postgres_url)


def central_counts(url, schema=CENTRAL):
    """(rows, distinct (unit, collection, id)) per unit in the central store."""
    with psycopg.connect(url) as connection:
        return {unit: (rows, distinct) for unit, rows, distinct in connection.execute(
            f'SELECT unit, count(*), count(DISTINCT (collection, id)) FROM "{schema}".records '
            'GROUP BY unit')}


def panoptes(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, '-m', 'panoptes_cli', *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                          timeout=300, **kwargs)


# The CLI on postgres.

@pytest.mark.slow
def test_cli_insert_find_current_clear(cli, central, postgres_url):
    url = ['--db-type', 'postgres', '--db-url', postgres_url, '--db-name', CENTRAL]
    inserted = cli('db', 'insert', 'weather', '--current', *url,
                   input='{"temp": 12.5, "safe": true}\n[{"temp": 30}, {"temp": 1}]\n')
    assert inserted.exit_code == 0, inserted.stderr
    ids = [json.loads(line)['_id'] for line in inserted.stdout.splitlines()]
    assert len(ids) == 3
    found = cli('db', 'find', 'weather', ids[0], *url)
    assert json.loads(found.stdout)['data'] == {'temp': 12.5, 'safe': True}
    hot = cli('db', 'find', 'weather', '--where', 'temp>20', '--fields', 'temp', *url)
    assert [json.loads(line)['data'] for line in hot.stdout.splitlines()] == [{'temp': 30}]
    assert json.loads(cli('db', 'current', 'weather', *url).stdout)['_id'] == ids[-1]
    assert cli('db', 'clear-current', 'weather', *url).exit_code == 0
    assert cli('db', 'current', 'weather', *url).exit_code == 1
    pruned = cli('db', 'prune', '--before', '2999-01-01', *url)
    assert json.loads(pruned.stdout) == {'collection': 'weather', 'deleted': 3}


@pytest.mark.slow
def test_environment_names_the_server(cli, central, postgres_url, monkeypatch):
    monkeypatch.setenv('PANOPTES_DB_TYPE', 'postgres')
    monkeypatch.setenv('PANOPTES_DB_NAME', CENTRAL)
    assert cli('db', 'insert', 'power', input='{"volts": 12}\n').exit_code == 0
    assert json.loads(cli('db', 'find', 'power').stdout)['data'] == {'volts': 12}


@pytest.mark.slow
def test_a_missing_schema_is_an_error(cli, postgres_url):
    result = cli('db', 'find', 'weather', '--db-type', 'postgres', '--db-url', postgres_url,
                 '--db-name', 'never_made')
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no database 'never_made' on PostgreSQL at 127.0.0.1:")


@pytest.mark.parametrize('args', [
    ['db', 'find', 'weather', '--db-type', 'postgres', '--db-url', 'mysql://pan@host/fleet'],
    ['db', 'find', 'weather', '--db-type', 'postgres', '--db-url', 'postgresql://pan@host:port/x'],
    ['db', 'find', 'weather', '--db-type', 'postgres'],
    ['db', 'sync', '--to', 'postgresql://pan:s3cret@host', '--unit', 'PAN001'],
    ['db', 'sync', '--to', 'not a url', '--unit', 'PAN001'],
])
def test_malformed_urls_are_usage_errors(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    assert 's3cret' not in result.stderr + result.stdout


def test_unreachable_server_one_line_no_password_nothing_marked(cli, isolated_env):
    cli('db', 'insert', 'weather', input='{"temp": 1}\n{"temp": 2}\n')
    port = free_port()
    url = f'postgresql://pan:s3cret@127.0.0.1:{port}/fleet'
    result = cli('db', 'sync', '--to', url, '--unit', 'PAN001')
    assert result.exit_code == 1
    assert result.stderr == (f'Error: cannot connect to PostgreSQL at 127.0.0.1:{port}: '
                             'Connection refused\n')
    assert 's3cret' not in result.stdout + result.stderr
    local = PanDB('sqlite')
    assert local.count_unsent(f'postgresql://pan:***@127.0.0.1:{port}/fleet#panoptes') == 2


# Sync.

@pytest.mark.slow
@pytest.mark.parametrize('source_type', ['sqlite', 'file'])
def test_sync_is_idempotent_and_goes_on(central, postgres_url, source_type):
    local = PanDB(source_type, 'unit_store')
    local.insert_many('weather', [{'n': n} for n in range(250)])
    local.insert_many('power', [{'n': n} for n in range(10)])
    reports = list(sync(local, central, 'PAN001', batch_size=100))
    assert reports[0].total == 260 and reports[-1].done and reports[-1].complete
    assert (reports[-1].sent, reports[-1].new) == (260, 260)
    again = list(sync(local, central, 'PAN001'))
    assert (again[-1].total, again[-1].sent) == (0, 0)
    local.insert('weather', {'n': 'late'})
    assert list(sync(local, central, 'PAN001'))[-1].new == 1
    assert central_counts(postgres_url) == {'PAN001': (261, 261)}
    found = next(central.find('weather', parse=False))
    assert (found['unit'], found['data']) == ('PAN001', {'n': 'late'})


@pytest.mark.slow
def test_a_batch_committed_but_not_marked_is_not_stored_twice(central, postgres_url):
    local = PanDB('sqlite', 'unit_store')
    local.insert_many('weather', [{'n': n} for n in range(30)])
    # A sync that died between the central commit and the local mark.
    rows, _mark = next(local.unsent(target_key(central), 20))
    assert central.receive('PAN002', rows) == 20
    assert list(sync(local, central, 'PAN002', batch_size=7))[-1].new == 10
    assert central_counts(postgres_url) == {'PAN002': (30, 30)}


@pytest.mark.slow
def test_max_seconds_stops_between_batches(central):
    local = PanDB('sqlite', 'unit_store')
    local.insert_many('weather', [{'n': n} for n in range(50)])
    last = list(sync(local, central, 'PAN003', batch_size=10, max_seconds=0))[-1]
    assert (last.sent, last.complete) == (10, False)
    assert list(sync(local, central, 'PAN003', batch_size=10))[-1].sent == 40


@pytest.mark.slow
def test_eight_units_sync_concurrently(central, postgres_url, tmp_path):
    per_unit = 3000
    units = [f'PAN{n:03d}' for n in range(8)]
    for unit in units:
        pandir = tmp_path / unit
        pandir.mkdir()
        filled = panoptes('db', 'insert', 'weather', env={'PANDIR': str(pandir)},
                          input=''.join(json.dumps({'unit': unit, 'n': n}) + '\n'
                                        for n in range(per_unit)))
        assert filled.returncode == 0, filled.stderr
    procs = [subprocess.Popen(
        [sys.executable, '-m', 'panoptes_cli', 'db', 'sync', '--to', postgres_url,
         '--to-db-name', CENTRAL, '--unit', unit, '--batch-size', '400'],
        env=dict(os.environ, PANDIR=str(tmp_path / unit)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for unit in units]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        summary = json.loads(out.splitlines()[-1])
        assert (summary['sent'], summary['new'], summary['complete']) == (per_unit, per_unit, True)
    # 0 lost, 0 duplicated.
    assert central_counts(postgres_url) == {unit: (per_unit, per_unit) for unit in units}


@pytest.mark.slow
def test_sync_killed_mid_batch_then_rerun_is_exact(central, postgres_url, tmp_path):
    total = 60_000
    env = {'PANDIR': str(tmp_path)}
    filled = panoptes('db', 'insert', 'weather', env=env,
                      input=''.join(f'{{"n": {n}}}\n' for n in range(total)))
    assert filled.returncode == 0, filled.stderr
    command = [sys.executable, '-m', 'panoptes_cli', 'db', 'sync', '--to', postgres_url,
               '--to-db-name', CENTRAL, '--unit', 'PAN009', '--batch-size', '5000']
    proc = subprocess.Popen(command, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # After the first committed batch, in the middle of a later one: kill -9.
    while True:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        if json.loads(line)['sent'] > 0:
            break
    time.sleep(0.15)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    rows, distinct = central_counts(postgres_url).get('PAN009', (0, 0))
    assert rows == distinct and 0 < rows < total
    rerun = subprocess.run(command, env=dict(os.environ, **env), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert central_counts(postgres_url) == {'PAN009': (total, total)}


# find --follow, across processes.

@pytest.mark.slow
@pytest.mark.parametrize('db_type', ['sqlite', 'file', 'postgres'])
def test_follow_sees_another_process_insert_within_a_second(db_type, postgres_url, tmp_path):
    env = {'PANDIR': str(tmp_path), 'PANOPTES_DB_TYPE': db_type, 'PANOPTES_DB_URL': postgres_url,
           'PANOPTES_DB_NAME': 'follow_test'}
    PanPostgresDB.permanently_erase_database('follow_test', url=postgres_url)
    assert panoptes('db', 'insert', 'weather', env=env, input='{"n": 0}\n').returncode == 0
    follower = subprocess.Popen(
        [sys.executable, '-m', 'panoptes_cli', 'db', 'find', 'weather', '--follow',
         '--max-seconds', '60'], env=dict(os.environ, **env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(
        (time.monotonic(), line) for line in follower.stdout))
    reader.start()
    try:
        # Until the follower is watching, a record may come before it: insert until one shows.
        deadline = time.monotonic() + 60
        while not lines:
            assert time.monotonic() < deadline, follower.stderr.read()
            panoptes('db', 'insert', 'weather', env=env, input='{"n": "warm-up"}\n')
            time.sleep(0.5)
        seen = len(lines)
        panoptes('db', 'insert', 'weather', env=env, input='{"n": "timed"}\n')
        stored = time.monotonic()
        while len(lines) == seen and time.monotonic() < stored + 5:
            time.sleep(0.01)
        arrived, line = lines[seen]
        assert json.loads(line)['data'] == {'n': 'timed'}
        assert arrived - stored < 1.0
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=30)
        reader.join(timeout=30)
        PanPostgresDB.permanently_erase_database('follow_test', url=postgres_url)
    assert follower.returncode == 130


# The schema's versions.

@pytest.mark.slow
def test_an_older_schema_is_migrated_in_place(postgres_url):
    PanPostgresDB.permanently_erase_database('migrate_test', url=postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute('CREATE SCHEMA migrate_test')
        connection.execute(_MIGRATIONS[0].replace('{schema}', 'migrate_test'))
        connection.execute('CREATE TABLE migrate_test.schema_version (version integer NOT NULL)')
        connection.execute('INSERT INTO migrate_test.schema_version VALUES (1)')
        connection.execute("INSERT INTO migrate_test.records (collection, id, date, data) "
                           "VALUES ('weather', 'old-1', '2024-05-01T00:00:00', '{\"temp\": 3}')")
    try:
        db = PanPostgresDB('migrate_test', url=postgres_url)
        assert db.find('weather', 'old-1', parse=False)['data'] == {'temp': 3}
        db.insert('weather', {'temp': 4})
        with psycopg.connect(postgres_url) as connection:
            version = connection.execute('SELECT version FROM migrate_test.schema_version')
            assert version.fetchall() == [(SCHEMA_VERSION,)]
            connection.execute('UPDATE migrate_test.schema_version SET version = 99')
        with pytest.raises(DatabaseError, match='newer panoptes-cli'):
            PanPostgresDB('migrate_test', url=postgres_url)
    finally:
        PanPostgresDB.permanently_erase_database('migrate_test', url=postgres_url)
