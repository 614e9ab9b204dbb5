"""Edge cases that used to end in an internal error: each gives one ``Error:`` line, or works."""

import json
import math

import pytest


def test_a_duration_reaching_before_year_1_is_refused(cli):
    result = cli('db', 'find', 'weather', '--since', '999999d')
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2, "Error: Invalid value for '--since': '999999d' reaches back before the year 1; "
           'give a shorter duration or an ISO-8601 time')


def test_pocstime_at_the_last_second_there_is(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '9999-12-31T23:59:59')
    for _ in range(2):
        result = cli('time', 'now', '-f', 'iso')
        assert (result.exit_code, result.stdout) == (0, '9999-12-31T23:59:59.000\n')


@pytest.mark.parametrize('args', [
    ['db', 'insert', 'weather\n'],
    ['db', 'find', 'weather\n'],
    ['config', 'get', 'name\n', '--file', '{config}'],
])
def test_names_with_a_trailing_newline_are_refused(cli, shared_data, args):
    args = [arg.format(config=shared_data / 'testing.yaml') for arg in args]
    result = cli(*args, input='{"a": 1}\n')
    # A bad collection name is a usage error (exit 2, usage shown); a bad config key exit 1.
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error: ')]
    assert result.exit_code == (2 if args[0] == 'db' else 1)
    assert len(errors) == 1 and errors == result.stderr.splitlines()[-1:]
    assert '\\n' in result.stderr


def test_nan_and_infinity_in_records_come_out_as_valid_json(cli):
    stored = cli('db', 'insert', 'sensor', input='{"t": NaN, "u": Infinity, "v": 1e999, "w": 2.5}\n')
    assert stored.exit_code == 0, stored.stderr

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f'{name} in the output'))

    found = cli('db', 'find', 'sensor')
    assert strict(found.stdout)['data'] == {'t': None, 'u': None, 'v': None, 'w': 2.5}
    current = cli('db', 'find', 'sensor', '--limit', 1)
    assert strict(current.stdout.splitlines()[0])['data']['w'] == 2.5


def test_json_text_keeps_finite_numbers():
    from panoptes_cli.commands.output import json_text

    assert json_text({'a': [1.0, -0.0, 1e308], 'b': math.pi}) == json.dumps(
        {'a': [1.0, -0.0, 1e308], 'b': math.pi})
