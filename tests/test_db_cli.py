"""``panoptes db``: NDJSON in and out, in process and through the real executable."""

import contextlib
import json
import os
import shutil
import signal
import subprocess

import pytest

from conftest import python_output
from panoptes_cli.database import PanDB


def ids(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    assert all(set(json.loads(line)) == {'_id'} for line in lines)
    return [json.loads(line)['_id'] for line in lines]


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


# In process.

def test_insert_then_find(cli, isolated_env):
    result = cli('db', 'insert', 'weather', input='{"temp": 12.5, "safe": true}\n{"temp": 13}\n')
    assert result.exit_code == 0, result.stderr
    inserted = ids(result.stdout)
    assert len(inserted) == 2
    assert result.stderr == ''
    assert (isolated_env / 'sqlite_store' / 'panoptes.sqlite').exists()

    found = records(cli('db', 'find', 'weather').stdout)
    assert [r['_id'] for r in found] == inserted[::-1]
    assert found[1] == {'_id': inserted[0], 'type': 'weather', 'date': found[1]['date'],
                        'data': {'temp': 12.5, 'safe': True}}

    one = cli('db', 'find', 'weather', inserted[0])
    assert one.exit_code == 0 and records(one.stdout) == [found[1]]


def test_insert_reports_bad_lines_and_stores_the_rest(cli):
    result = cli('db', 'insert', 'weather', input='{"temp": 1}\n{"temp": \n{"temp": 3}\nnope\n')
    assert result.exit_code == 1
    assert len(ids(result.stdout)) == 2
    assert result.stderr.splitlines() == [
        'Error: line 2: invalid JSON: Expecting value at column 10',
        'Error: line 4: invalid JSON: Expecting value at column 1',
    ]
    assert len(records(cli('db', 'find', 'weather').stdout)) == 2


def test_insert_from_a_file(cli, tmp_path):
    path = tmp_path / 'weather.ndjson'
    path.write_text('{"temp": 1}\n{"temp": \n')
    result = cli('db', 'insert', 'weather', path)
    assert result.exit_code == 1
    assert len(ids(result.stdout)) == 1
    assert result.stderr == f'Error: {path}: line 2: invalid JSON: Expecting value at column 10\n'


def test_insert_missing_file(cli, tmp_path):
    result = cli('db', 'insert', 'weather', tmp_path / 'nope.ndjson')
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: ') and 'No such file' in result.stderr


def test_insert_one_pretty_document(cli):
    document = json.dumps({'temp': 1, 'wind': {'speed': 3}}, indent=2)
    result = cli('db', 'insert', 'weather', input=document)
    assert result.exit_code == 0
    assert records(cli('db', 'find', 'weather').stdout)[0]['data'] == {'temp': 1, 'wind': {'speed': 3}}


def test_insert_current_and_current(cli):
    result = cli('db', 'insert', 'weather', '--current', input='{"temp": 1}\n{"temp": 2}\n')
    last = ids(result.stdout)[-1]
    current = cli('db', 'current', 'weather')
    assert current.exit_code == 0
    assert json.loads(current.stdout)['_id'] == last
    assert cli('db', 'clear-current', 'weather').exit_code == 0
    none = cli('db', 'current', 'weather')
    assert none.exit_code == 1 and none.stdout == ''
    assert none.stderr == ('Error: no current weather record; insert one with: '
                           'panoptes db insert weather --current\n')


def test_find_filters(cli):
    lines = ''.join(json.dumps({'type': 'weather', 'date': f'2024-05-0{d}T12:00:00', 'data': {
        'day': d, 'safe': d % 2 == 0, 'wind': {'dir': 'NW' if d < 3 else 'SE'}}}) + '\n'
        for d in range(1, 6))
    assert cli('db', 'insert', 'weather', input=lines).exit_code == 0

    def days(*args):
        result = cli('db', 'find', 'weather', *args)
        assert result.exit_code == 0, result.stderr
        return [r['data']['day'] for r in records(result.stdout)]

    assert days() == [5, 4, 3, 2, 1]
    assert days('--since', '2024-05-03') == [5, 4, 3]
    assert days('--until', '2024-05-03') == [2, 1]
    assert days('--where', 'safe=true') == [4, 2]
    assert days('-w', 'safe=false', '-w', 'wind.dir=SE') == [5, 3]
    assert days('--limit', '2') == [5, 4]
    assert days('-n', '0') == []
    assert days('--where', 'day=9') == []


def test_find_relative_time(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2024-05-01 12:00:00')
    cli('db', 'insert', 'weather', input='{"n": 1}\n')
    monkeypatch.setenv('POCSTIME', '2024-05-01 14:00:00')
    assert len(records(cli('db', 'find', 'weather', '--since', '3h').stdout)) == 1
    assert cli('db', 'find', 'weather', '--since', '1h').stdout == ''


def test_find_missing_id(cli):
    cli('db', 'insert', 'weather', input='{"n": 1}\n')
    result = cli('db', 'find', 'weather', 'no-such-id')
    assert result.exit_code == 1 and result.stdout == ''
    assert result.stderr.startswith("Error: no record 'no-such-id' in weather matches")


@pytest.mark.parametrize('args, message', [
    (['--since', 'yesterday'], "'yesterday' is not a time"),
    (['--where', 'temp'], "invalid condition 'temp'"),
])
def test_find_bad_filters(cli, args, message):
    result = cli('db', 'find', 'weather', *args)
    assert result.exit_code == 2
    assert f"Error: Invalid value for '{args[0]}': {message}" in result.stderr


def test_find_limit_must_be_positive(cli):
    assert cli('db', 'find', 'weather', '--limit', '-1').exit_code == 2


@pytest.mark.parametrize('command', [['insert'], ['find'], ['current'], ['clear-current']])
def test_path_traversal_is_refused(cli, command, tmp_path):
    before = sorted(tmp_path.rglob('*'))
    result = cli('db', *command, '../../etc/passwd', input='{"a": 1}\n')
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: Invalid value for 'COLLECTION': invalid collection "
                                  "name '../../etc/passwd': use 1-200 letters, digits, '_', "
                                  "'-' or '.'\n")
    after = sorted(tmp_path.rglob('*'))
    assert [p for p in after if p not in before and 'pandir' not in p.parts] == []


def test_bad_db_name(cli):
    result = cli('db', 'find', 'weather', '--db-name', '../x')
    assert result.exit_code == 2
    assert "Error: Invalid value for '--db-name': invalid database name '../x'" in result.stderr


def test_bad_db_type_is_a_usage_error(cli):
    result = cli('db', 'find', 'weather', '--db-type', 'mongo')
    assert result.exit_code == 2
    assert "'mongo' is not one of" in result.stderr


def test_which_store_options_then_environment(cli, isolated_env, monkeypatch):
    cli('db', 'insert', 'weather', '--db-type', 'file', '--db-name', 'obs', input='{"n": 1}\n')
    assert (isolated_env / 'json_store' / 'obs' / 'weather.json').exists()

    monkeypatch.setenv('PANOPTES_DB_TYPE', 'file')
    monkeypatch.setenv('PANOPTES_DB_NAME', 'obs')
    assert len(records(cli('db', 'find', 'weather').stdout)) == 1
    # Options beat the environment; a store that does not exist is an error (issue 13).
    missing = cli('db', 'find', 'weather', '--db-type', 'sqlite')
    assert (missing.exit_code, missing.stdout) == (1, '')
    assert missing.stderr.startswith("Error: no sqlite store 'obs': ")
    assert cli('db', 'find', 'weather', '--db-name', 'other').stderr.startswith(
        "Error: no file store 'other': ")
    assert not (isolated_env / 'sqlite_store' / 'obs.sqlite').exists()
    cli('db', 'insert', 'weather', '--db-type', 'sqlite', input='{"n": 2}\n')
    monkeypatch.setenv('PANOPTES_DB_TYPE', 'SQLite')
    assert cli('db', 'find', 'weather').exit_code == 0


def test_without_pandir_uses_the_user_data_directory(cli, monkeypatch, tmp_path):
    monkeypatch.delenv('PANDIR')
    assert cli('db', 'insert', 'weather', input='{"n": 1}\n').exit_code == 0
    assert (tmp_path / 'xdg-data' / 'panoptes' / 'sqlite_store' / 'panoptes.sqlite').exists()


def test_help_says_where_and_which(cli):
    result = cli('db', '--help')
    assert result.exit_code == 0
    for words in ('--db-type', 'PANOPTES_DB_TYPE', 'PANOPTES_DB_NAME', 'highest precedence first',
                  '$XDG_DATA_HOME/panoptes', '~/.local/share/panoptes', '$PANDIR'):
        assert words in result.stdout
    for command in ('insert', 'find', 'current', 'clear-current', 'prune'):
        help_text = cli('db', command, '--help').stdout
        assert 'Examples:' in help_text and f'panoptes db {command}' in help_text
        # Whatever the wrapping of the option column.
        assert '[env var: PANOPTES_DB_TYPE' in ' '.join(help_text.split())


def test_commands_module_imports_no_database():
    code = ('import sys, panoptes_cli.commands.main; '
            'print([m for m in sys.modules if m.startswith("panoptes_cli.database") '
            'or m in ("sqlite3", "ruamel", "loguru")])')
    assert python_output(code) == '[]'


# The real executable.

@pytest.mark.slow
def test_pipe_find_into_insert_keeps_records(run_panoptes, isolated_env):
    """Copy a file store into sqlite through a real pipe: same ids, dates and data."""
    inserted = run_panoptes('db', 'insert', 'weather', '--db-type', 'file', '--current',
                            input=''.join(f'{{"n": {n}}}\n' for n in range(50)))
    assert inserted.returncode == 0, inserted.stderr
    panoptes = shutil.which('panoptes')
    pipeline = subprocess.run(
        f'{panoptes} db find weather --db-type file | {panoptes} db insert weather', shell=True,
        capture_output=True, text=True, timeout=60, check=False)
    assert pipeline.returncode == 0, pipeline.stderr
    file_records = records(run_panoptes('db', 'find', 'weather', '--db-type', 'file').stdout)
    sqlite_records = records(run_panoptes('db', 'find', 'weather').stdout)
    # Records of the same millisecond may come out in another order.
    assert sorted(sqlite_records, key=str) == sorted(file_records, key=str)
    assert len(sqlite_records) == 50


@pytest.mark.slow
def test_closed_stdout_is_quiet(run_panoptes):
    run_panoptes('db', 'insert', 'weather', input='{"n": 1}\n' * 3000, check=True)
    panoptes = shutil.which('panoptes')
    result = subprocess.run(f'{panoptes} db find weather | head -1', shell=True,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ''


@pytest.mark.slow
def test_insert_stores_everything_when_stdout_closes(run_panoptes, isolated_env):
    panoptes = shutil.which('panoptes')
    lines = ''.join(f'{{"n": {n}, "pad": "{"x" * 200}"}}\n' for n in range(5000))
    result = subprocess.run(f'{panoptes} db insert weather | head -1', shell=True, input=lines,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == ''
    assert len(result.stdout.splitlines()) == 1
    assert len(list(PanDB(db_type='sqlite').find('weather'))) == 5000


@pytest.mark.slow
def test_live_stream_ids_come_as_records_arrive(isolated_env):
    """Each id is printed (and its record stored) before the next line is even written."""
    process = subprocess.Popen([shutil.which('panoptes'), 'db', 'insert', 'weather', '--current'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    db = PanDB(db_type='sqlite')
    try:
        for n in range(3):
            process.stdin.write(json.dumps({'n': n}) + '\n')
            process.stdin.flush()
            obj_id = json.loads(process.stdout.readline())['_id']
            assert db.find('weather', obj_id)['data'] == {'n': n}
            assert db.get_current('weather')['_id'] == obj_id
    finally:
        process.stdin.close()
    assert process.wait(30) == 0


def test_killed_mid_stream_loses_no_printed_record(isolated_env):
    """SIGKILL during a stream: every id printed is stored, and the store is sound."""
    import sqlite3

    process = subprocess.Popen([shutil.which('panoptes'), 'db', 'insert', 'weather'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    process.stdin.write(b''.join(b'{"n": %d, "note": "%s"}\n' % (n, b'x' * 500)
                                 for n in range(100)))
    process.stdin.flush()
    printed = [json.loads(process.stdout.readline())['_id'] for _ in range(10)]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    printed += [json.loads(line)['_id'] for line in process.stdout.read().splitlines()
                if line.endswith(b'}')]
    process.stdout.close()
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    db = PanDB(db_type='sqlite')
    assert all(db.find('weather', obj_id) is not None for obj_id in printed)
    with sqlite3.connect(db.db_file) as connection:
        assert connection.execute('PRAGMA integrity_check').fetchone() == ('ok',)


@pytest.mark.slow
def test_concurrent_cli_inserts(isolated_env):
    panoptes = shutil.which('panoptes')
    processes = [subprocess.Popen([panoptes, 'db', 'insert', 'weather', *extra],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for extra in ([], [], ['--db-type', 'file'], ['--db-type', 'file'])]
    outputs = [p.communicate(''.join(f'{{"n": {n}}}\n' for n in range(500)), timeout=60)[0]
               for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert all(len(ids(out)) == 500 for out in outputs)
    assert len(list(PanDB(db_type='sqlite').find('weather'))) == 1000
    assert len(list(PanDB(db_type='file').find('weather'))) == 1000


def test_serial_listen_readings_are_stored_once_not_nested(cli):
    import json

    from panoptes_cli.rs232 import Reading

    # What `panoptes serial listen PORT` prints for each line of a weather board.
    readings = [Reading('2026-11-29T02:00:0%d.000' % n, '/dev/ttyACM0', '{"temp": %d}' % n,
                        {'temp': n}).record() for n in range(3)]
    stored = cli('db', 'insert', 'weather', '-',
                 input=''.join(json.dumps(reading) + '\n' for reading in readings))
    assert stored.exit_code == 0, stored.stderr
    found = [json.loads(line) for line in cli('db', 'find', 'weather').stdout.splitlines()]
    assert [(record['date'], record['data']) for record in found] == [
        ('2026-11-29T02:00:02.000', {'temp': 2}), ('2026-11-29T02:00:01.000', {'temp': 1}),
        ('2026-11-29T02:00:00.000', {'temp': 0})]
