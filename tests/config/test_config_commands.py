"""``panoptes config run|get|set|stop|reset``, in process and through the real executable."""

import json
import os
import select
import shutil
import signal
import subprocess

import pytest

from panoptes_cli.config.client import get_config, server_is_running

# --- get --------------------------------------------------------------------------------

@pytest.mark.slow
def test_get_prints_json(cli, server):
    result = cli('config', 'get', 'location.horizon')
    assert (result.exit_code, result.stdout, result.stderr) == (0, '"30.0 deg"\n', '')
    assert cli('config', 'get', 'cameras.devices[1].model').stdout == '"canon_gphoto2"\n'
    assert cli('config', 'get', 'mount.serial').stdout == (
        '{"port": "/dev/ttyUSB0", "timeout": 0.0, "baudrate": 9600}\n')
    whole = json.loads(cli('config', 'get').stdout)
    assert whole['location']['elevation'] == '3400.0 m'


def test_get_missing_key_prints_null_and_fails_unless_default(cli, server):
    result = cli('config', 'get', 'no.such.key')
    assert (result.exit_code, result.stdout, result.stderr) == (1, 'null\n', '')
    result = cli('config', 'get', 'no.such.key', '--default', '10 deg')
    assert (result.exit_code, result.stdout) == (0, '"10 deg"\n')
    assert cli('config', 'get', 'no.such.key', '--default', '42').stdout == '42\n'
    # A default does not replace a value that is there.
    assert cli('config', 'get', 'location.horizon', '--default', '42').stdout == '"30.0 deg"\n'


def test_get_with_no_server(cli):
    port = os.environ['PANOPTES_CONFIG_PORT']
    result = cli('config', 'get', 'location.horizon')
    assert result.exit_code == 1
    assert result.stdout == ''
    assert result.stderr == (f"Error: config server at http://127.0.0.1:{port}: connection refused; "
                             "start it with 'panoptes config run'\n")


def test_get_host_and_port_options(cli, server, monkeypatch, unused_port):
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', str(unused_port()))
    assert cli('config', 'get', 'name').exit_code == 1
    result = cli('config', 'get', 'name', '--host', '127.0.0.1', '--port', server.port)
    assert (result.exit_code, result.stdout) == (0, '"Testing PANOPTES Unit"\n')


@pytest.mark.slow
def test_get_from_a_file_needs_no_server(cli, config_file):
    result = cli('config', 'get', 'location.horizon', '--file', config_file)
    assert (result.exit_code, result.stdout) == (0, '"30.0 deg"\n')
    assert cli('config', 'get', 'location.horizon', '--file', config_file,
               '--no-parse').stdout == '"30 deg"\n'
    config_file.with_name('testing_local.yaml').write_text('location:\n  horizon: 45 deg\n')
    assert cli('config', 'get', 'location', '--file', config_file).stdout.startswith(
        '{"name": "Mauna Loa Observatory", "latitude": "19.54 deg"')
    assert cli('config', 'get', 'location.horizon', '--file', config_file).stdout == '"45.0 deg"\n'
    result = cli('config', 'get', 'nothing', '--file', config_file)
    assert (result.exit_code, result.stdout) == (1, 'null\n')
    whole = json.loads(cli('config', 'get', '--file', config_file).stdout)
    assert whole['cameras']['devices'][1]['model'] == 'canon_gphoto2'


def test_get_from_stdin(cli, config_file):
    result = cli('config', 'get', 'pan_id', '--file', '-', input=config_file.read_text())
    assert (result.exit_code, result.stdout) == (0, '"PAN000"\n')
    result = cli('config', 'get', 'pan_id', '--file', '-', input='a: [1\n')
    assert result.exit_code == 1
    assert result.stderr == ("Error: <stdin>: invalid YAML at line 2, column 1: "
                             "expected ',' or ']', but got '<stream end>'\n")


def test_get_from_a_bad_file(cli, tmp_path):
    result = cli('config', 'get', 'name', '--file', tmp_path / 'missing.yaml')
    assert result.exit_code == 1
    assert result.stderr == f'Error: {tmp_path / "missing.yaml"}: no such config file\n'


def test_get_rejects_bad_keys(cli, server):
    result = cli('config', 'get', 'a..b')
    assert result.exit_code == 1
    assert "bad config key 'a..b': empty name before '.b'" in result.stderr


# --- set --------------------------------------------------------------------------------

@pytest.mark.parametrize('value, printed', [
    ('45', '45'),
    ('45.5', '45.5'),
    ('true', 'true'),
    ('no', '"no"'),
    ('37 deg', '"37.0 deg"'),  # as a reload of the saved file gives it
    ('[1, 2]', '[1, 2]'),
    ('{a: 1}', '{"a": 1}'),
    ('Unit: PAN001', '"Unit: PAN001"'),
    ('null', 'null'),
    ('2020-01-01', '"2020-01-01"'),
    ('[unclosed', '"[unclosed"'),
])
def test_set_reads_values_like_yaml(cli, server, value, printed):
    result = cli('config', 'set', 'some.key', value)
    assert (result.exit_code, result.stdout, result.stderr) == (0, f'{{"some.key": {printed}}}\n', '')
    assert json.loads(cli('config', 'get', 'some.key').stdout or 'null') == json.loads(printed)


def test_set_json(cli, server):
    result = cli('config', 'set', 'cameras.devices', '[{"model": "zwo"}]', '--json')
    assert (result.exit_code, result.stdout) == (0, '{"cameras.devices": [{"model": "zwo"}]}\n')
    assert get_config('cameras.devices[0].model') == 'zwo'
    result = cli('config', 'set', 'x', '{not json', '--json')
    assert result.exit_code == 2
    assert 'not valid JSON' in result.stderr


def test_set_errors(cli, server):
    result = cli('config', 'set', 'cameras.devices[5].model', 'zwo')
    assert result.exit_code == 1
    assert result.stderr == (f'Error: config server at http://127.0.0.1:{server.port}: cannot set '
                             'cameras.devices[5].model: list index 5 is out of range, '
                             'cameras.devices has 2 item(s)\n')
    assert cli('config', 'set', 'only-a-key').exit_code == 2


# --- reset and stop ---------------------------------------------------------------------

def test_reset(cli, server, config_file):
    cli('config', 'set', 'location.horizon', '45 deg')
    result = cli('config', 'reset')
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {'success': True,
                                         'msg': f'Configuration reset from {config_file}'}
    assert cli('config', 'get', 'location.horizon').stdout == '"30.0 deg"\n'


@pytest.mark.slow
def test_reset_to_defaults(cli, start_server, config_file):
    config_file.with_name('testing_local.yaml').write_text('location:\n  horizon: 45 deg\n')
    start_server(config_file)
    assert cli('config', 'get', 'location.horizon').stdout == '"45.0 deg"\n'
    assert cli('config', 'reset', '--defaults').exit_code == 0
    assert cli('config', 'get', 'location.horizon').stdout == '"30.0 deg"\n'


def test_reset_to_defaults_keeps_the_local_file_as_a_backup(cli, start_server, config_file):
    local = config_file.with_name('testing_local.yaml')
    local.write_text('location:\n  horizon: 45 deg\n')
    start_server(config_file, save_local=True)
    result = cli('config', 'reset', '--defaults')
    assert result.exit_code == 0
    backup = json.loads(result.stdout)['backup']
    assert result.stderr == f'The old local config is kept as {backup}\n'
    assert open(backup).read() == 'location:\n  horizon: 45 deg\n' and not local.exists()
    assert cli('config', 'get', 'location.horizon').stdout == '"30.0 deg"\n'


# --- diff -------------------------------------------------------------------------------

def test_diff_prints_what_the_local_file_changes(cli, config_file):
    assert (cli('config', 'diff', str(config_file)).stdout) == ''
    config_file.with_name('testing_local.yaml').write_text(
        'location:\n  horizon: 45 deg\n  name: Mauna Loa Observatory\nnew: [1]\n')
    result = cli('config', 'diff', str(config_file))
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {'key': 'location.horizon', 'base': '30.0 deg', 'local': '45.0 deg'},
        {'key': 'new', 'base': None, 'local': [1]}]
    assert cli('config', 'diff', str(config_file), '--csv').stdout.splitlines()[0] == 'key,base,local'


def test_diff_of_a_missing_file_fails(cli, tmp_path):
    result = cli('config', 'diff', str(tmp_path / 'none.yaml'))
    assert result.exit_code == 1 and 'none.yaml: no such config file' in result.stderr


# --- get --wait -------------------------------------------------------------------------

@pytest.mark.slow
def test_get_wait_waits_for_a_server_that_is_starting(cli, start_server, config_file, unused_port,
                                                      monkeypatch):
    import threading

    port = unused_port()
    starter = threading.Timer(1.0, start_server, args=(config_file,), kwargs={'port': port})
    monkeypatch.setenv('PANOPTES_CONFIG_PORT', str(port))
    starter.start()
    try:
        result = cli('config', 'get', 'pan_id', '--wait', '60')
    finally:
        starter.join()
    assert (result.exit_code, result.stdout) == (0, '"PAN000"\n')


@pytest.mark.slow
def test_get_wait_gives_up(cli, unused_port):
    port = unused_port()
    result = cli('config', 'get', 'pan_id', '--wait', '0.5', '--port', port)
    assert result.exit_code == 1
    assert result.stderr.startswith(f'Error: config server at http://127.0.0.1:{port}: '
                                    'no answer within 0.5 s')
    assert cli('config', 'get', 'pan_id', '--wait', '-1').exit_code == 2


def test_stop(cli, server):
    result = cli('config', 'stop')
    assert (result.exit_code, result.stdout, result.stderr) == (0, '', '')
    assert not server_is_running()
    server.join(10)
    assert server.exitcode == 0
    result = cli('config', 'stop')
    assert result.exit_code == 1
    assert 'connection refused' in result.stderr


def test_every_command_has_examples(cli):
    for command in ('run', 'get', 'set', 'stop', 'reset', 'diff'):
        result = cli('config', command, '--help')
        assert result.exit_code == 0
        assert 'Examples:' in result.stdout and 'panoptes config ' + command in result.stdout


# --- run, through the real executable ---------------------------------------------------

def start_run(*args, env=None):
    """Start ``panoptes config run`` and return (process, its first stderr line)."""
    executable = shutil.which('panoptes') or pytest.fail('panoptes is not installed')
    process = subprocess.Popen([executable, 'config', 'run', *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, **(env or {})))
    ready, _, _ = select.select([process.stderr], [], [], 60)
    if not ready:
        process.kill()
        pytest.fail('panoptes config run wrote nothing within 60 s')
    return process, process.stderr.readline()


@pytest.fixture
def running():
    """Start ``panoptes config run`` processes; kill any left at the end."""
    processes = []

    def start(*args, env=None):
        process, line = start_run(*args, env=env)
        processes.append(process)
        return process, line

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize('stop_signal', [signal.SIGINT, signal.SIGTERM])
def test_run_serves_until_a_signal(running, config_file, stop_signal):
    port = int(os.environ['PANOPTES_CONFIG_PORT'])
    process, line = running(config_file)
    assert line == (f'Serving {config_file} at http://127.0.0.1:{port} (saving changes to '
                    f'{config_file.with_name("testing_local.yaml")}); Ctrl-C stops it\n')
    assert get_config('location.horizon', port=port).value == 30
    process.send_signal(stop_signal)
    assert process.wait(15) == 0
    assert process.stdout.read() == ''
    assert process.stderr.read() == ''
    assert not server_is_running(port=port)


@pytest.mark.slow
def test_run_saves_changes_by_default_and_stop_ends_it(running, run_panoptes, config_file):
    process, _ = running(config_file)
    result = run_panoptes('config', 'set', 'location.horizon', '37 deg')
    assert (result.returncode, result.stdout) == (0, '{"location.horizon": "37.0 deg"}\n')
    local = config_file.with_name('testing_local.yaml').read_text()
    # Only the change, with its comment from the main file.
    assert local == ('location:\n'
                     '  horizon: 37.0 deg # targets must be above this to be considered valid.\n')
    result = run_panoptes('config', 'get', 'location.horizon')
    assert (result.returncode, result.stdout) == (0, '"37.0 deg"\n')
    assert run_panoptes('config', 'stop').returncode == 0
    assert process.wait(15) == 0
    # After a restart, the value reads back as the same text.
    running(config_file)
    assert run_panoptes('config', 'get', 'location.horizon').stdout == '"37.0 deg"\n'


@pytest.mark.slow
def test_run_serves_the_bundled_config_without_saving(running, monkeypatch):
    monkeypatch.delenv('PANOPTES_CONFIG_FILE')
    process, line = running('--no-load-local')
    assert 'default_config.yaml at http://127.0.0.1:' in line
    assert '(changes are not saved)' in line
    assert get_config('name') == 'Testing PANOPTES Unit'
    process.terminate()
    assert process.wait(15) == 0


@pytest.mark.slow
def test_run_refuses_a_bad_config(run_panoptes, config_file):
    config_file.write_text(config_file.read_text().replace('  horizon: 30 deg',
                                                           '  horizon: 30 deg: oops'))
    result = run_panoptes('config', 'run', config_file, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (f'Error: {config_file}: invalid YAML at line 21, column 18: '
                             'mapping values are not allowed here\n')


@pytest.mark.slow
def test_run_refuses_a_port_in_use(running, run_panoptes, config_file):
    running(config_file, '--no-save-local')
    port = os.environ['PANOPTES_CONFIG_PORT']
    result = run_panoptes('config', 'run', config_file, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f'Error: config server cannot listen on 127.0.0.1:{port}: '
                                    'Address already in use')


def test_run_usage_errors(cli, config_file):
    result = cli('config', 'run', config_file, '--public', '--host', '127.0.0.1')
    assert result.exit_code == 2
    assert 'give --public or --host, not both' in result.stderr
    result = cli('config', 'run', '-')
    assert result.exit_code == 2
    assert 'cannot serve stdin' in result.stderr


def test_run_public_asks_for_every_interface(cli, config_file, monkeypatch):
    # Tests serve on loopback only, so this stops at the address the server is given.
    from panoptes_cli.config import server

    asked = {}

    def refuse(*args, **kwargs):
        asked.update(kwargs)
        raise server.BadConnection('not listening in tests')

    monkeypatch.setattr(server, 'ConfigServer', refuse)
    result = cli('config', 'run', config_file, '--public', '--no-save-local')
    assert (result.exit_code, result.stderr) == (1, 'Error: not listening in tests\n')
    assert asked == {'host': '0.0.0.0', 'port': None, 'load_local': True, 'save_local': False,
                     'allow_hosts': ()}
