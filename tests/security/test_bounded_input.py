"""Hostile input to every parser: refused with its line number, never a crash or a lost batch.

``db insert`` and ``serial listen`` lines, YAML config files and ``config set``
values, each nested far deeper than the limit (100 levels), longer than their
size limit, or (YAML) with aliases that expand to billions of values.
"""

import json
import os
import time

import pytest

from panoptes_cli.serial_handlers import protocol_buffers as pb

DEEP = '[' * 100_000 + ']' * 100_000
# 355 bytes that name 9**9 strings when the aliases are expanded.
BILLION_LAUGHS = 'name: laughs\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + ''.join(
    f'{chr(98 + i)}: &{chr(98 + i)} [' + ','.join([f'*{chr(97 + i)}'] * 9) + ']\n' for i in range(8))


@pytest.mark.slow
def test_db_insert_stores_the_good_lines_around_hostile_ones(run_panoptes):
    from panoptes_cli.database.stream import MAX_LINE_BYTES

    lines = ['{"n": 1}', DEEP, '{"n": 3}', '{"x": ' + '[' * 150 + ']' * 150 + '}', '{"n": 5}',
             '{"big": "' + 'x' * (MAX_LINE_BYTES + 10) + '"}', '{"n": 7}']
    result = run_panoptes('db', 'insert', 'hostile', input='\n'.join(lines) + '\n', timeout=120)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 4
    assert result.stderr.splitlines() == [
        'Error: line 2: nested deeper than 100 levels; skipped',
        'Error: line 4: nested deeper than 100 levels; skipped',
        f'Error: line 6: longer than {MAX_LINE_BYTES} bytes; skipped',
    ]
    found = run_panoptes('db', 'find', 'hostile', '--limit', 10)
    assert sorted(json.loads(line)['data']['n'] for line in found.stdout.splitlines()) == [1, 3, 5, 7]


def test_serial_listen_skips_a_hostile_line_and_keeps_streaming(cli):
    pb.ResetBuffers(b'{"n": 0}\r\n{"n": 1}\r\n' + DEEP.encode() + b'\r\n{"n": 2}\r\n'
                    + b'{"x": ' + b'[' * 150 + b']' * 150 + b'}\r\n{"n": 3}\r\n')
    result = cli('serial', 'listen', 'buffers://', '-n', 4, '--timeout', 5)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)['data']['n'] for line in result.stdout.splitlines()] == [0, 1, 2, 3]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert all(line.startswith('Warning: buffers://: skipped a line: refused: nested deeper '
                               'than 100 levels') for line in warnings)


@pytest.mark.parametrize('text, line, why', [
    (BILLION_LAUGHS, 7, 'aliases expand to more than 100000 values'),
    ('name: deep\nvalue: ' + DEEP + '\n', 2, 'nested deeper than 100 levels'),
    ('name: deep\nvalue:\n' + ''.join('  ' * depth + f'k{depth}:\n' for depth in range(1, 400)),
     102, 'nested deeper than 100 levels'),
], ids=['billion-laughs', 'deep-flow', 'deep-block'])
@pytest.mark.slow
def test_a_hostile_config_file_is_refused_with_file_and_line(run_panoptes, tmp_path, text, line,
                                                             why):
    config = tmp_path / 'hostile.yaml'
    config.write_text(text)
    started = time.monotonic()
    for command in (['config', 'run', config, '--port', 0], ['config', 'get', 'name', '--file', config]):
        result = run_panoptes(*command, timeout=60)
        assert result.returncode == 1
        assert result.stderr.startswith(f'Error: {config}: YAML at line {line} refused: {why}')
        assert len(result.stderr.splitlines()) == 1
    # Before: the billion laughs kept `config run` at 100% CPU for ever.
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_fifo_is_refused_as_a_config_file(run_panoptes, tmp_path):
    fifo = tmp_path / 'pocs.yaml'
    os.mkfifo(fifo)
    result = run_panoptes('config', 'get', 'name', '--file', fifo, timeout=30)
    assert (result.returncode, result.stderr) == (
        1, f'Error: {fifo}: not a regular file (a pipe or a device); a config file is a YAML '
           'file on disk\n')


@pytest.mark.slow
def test_an_oversized_config_file_is_refused(run_panoptes, tmp_path):
    from panoptes_cli.limits import MAX_CONFIG_BYTES

    config = tmp_path / 'huge.yaml'
    config.write_text('name: huge\nnotes: "' + 'x' * MAX_CONFIG_BYTES + '"\n')
    result = run_panoptes('config', 'get', 'name', '--file', config, timeout=30)
    assert result.returncode == 1
    assert f'larger than the {MAX_CONFIG_BYTES} bytes a config file may have' in result.stderr


@pytest.mark.parametrize('value, options', [
    (BILLION_LAUGHS.replace('name: laughs\n', '').replace('\n', ', ').join('{}'), []),
    (DEEP, []),
    (DEEP, ['--json']),
], ids=['billion-laughs', 'deep-yaml', 'deep-json'])
def test_config_set_refuses_a_hostile_value_before_sending_it(cli, value, options):
    # No server runs: the value is refused before any connection is tried.
    result = cli('config', 'set', 'x', value, *options)
    assert result.exit_code == 2
    assert 'refused: ' in result.stderr
    assert 'Traceback' not in result.stderr
