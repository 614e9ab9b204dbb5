"""The one error and output contract every ``panoptes`` command follows."""

import json
import subprocess
import sys
import textwrap

import pytest
import typer

from panoptes_cli.commands import output
from panoptes_cli.error import NotFound

HEAVY_MODULES = ('astropy', 'numpy', 'matplotlib', 'photutils', 'serial', 'requests', 'scipy')


def test_help_lists_every_group(cli):
    result = cli('--help')
    assert result.exit_code == 0
    for group in ('config', 'fits', 'cr2', 'image', 'serial', 'db', 'time'):
        assert f'  {group} ' in result.stdout


def test_short_help_option(cli):
    assert cli('-h').exit_code == 0


def test_version(cli):
    from panoptes_cli import __version__

    result = cli('--version')
    assert result.exit_code == 0
    assert result.stdout.strip() == f'panoptes-cli {__version__}'


def test_usage_error_exits_2(cli):
    result = cli('time', 'now', '--no-such-option')
    assert result.exit_code == 2
    assert 'No such option' in result.stderr
    assert result.stdout == ''


def test_unknown_command_exits_2(cli):
    assert cli('no-such-group').exit_code == 2


def test_error_is_one_line_without_traceback(cli):
    result = cli('time', 'now', env={'POCSTIME': 'not a time'})
    assert result.exit_code == 1
    assert result.stdout == ''
    assert result.stderr.count('\n') == 1
    assert result.stderr.startswith("Error: POCSTIME='not a time': not an ISO-8601 time")
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('how', ['option', 'env'])
def test_debug_shows_traceback(cli, how):
    args = ('--debug', 'time', 'now') if how == 'option' else ('time', 'now')
    env = {'POCSTIME': 'bad'} | ({'PANOPTES_DEBUG': '1'} if how == 'env' else {})
    result = cli(*args, env=env)
    assert result.exit_code == 1
    assert 'Traceback (most recent call last)' in result.stderr
    assert result.stderr.rstrip().endswith("unset it")


def test_verbose_logs_to_stderr(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2020-01-01 00:00:00')
    result = cli('--verbose', 'time', 'now')
    assert result.exit_code == 0
    assert json.loads(result.stdout)['flat'] == '20200101T000000'


def test_keyboard_interrupt_exits_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert output.run_main(interrupted) == 130


def test_internal_error_is_one_line_with_hint(capsys):
    assert output.run_main(lambda: 1 / 0) == 1
    err = capsys.readouterr().err
    assert err.startswith('Error: internal error: ZeroDivisionError: division by zero;')
    assert err.count('\n') == 1


def test_os_error_names_the_file(capsys):
    def missing():
        open('no-such-frame.fits')

    assert output.run_main(missing) == 1
    assert capsys.readouterr().err == 'Error: no-such-frame.fits: No such file or directory\n'


def test_pan_error_message_is_used_as_is(capsys):
    def not_found():
        raise NotFound('config server at http://127.0.0.1:1: connection refused; start it')

    assert output.run_main(not_found) == 1
    assert capsys.readouterr().err == (
        'Error: config server at http://127.0.0.1:1: connection refused; start it\n')


def test_batch_does_every_item_then_fails(capsys):
    done = []

    def run():
        with output.Batch() as batch:
            for name in ('a.fits', 'b.fits', 'c.fits'):
                with batch.item(name):
                    if name == 'b.fits':
                        raise ValueError('not a FITS file (empty)')
                    done.append(name)

    assert output.run_main(run) == 1
    assert done == ['a.fits', 'c.fits']
    assert capsys.readouterr().err == 'Error: b.fits: not a FITS file (empty)\n'


def test_batch_lets_bugs_through():
    def run():
        with output.Batch() as batch, batch.item('x'):
            raise TypeError('a bug, not bad input')

    with pytest.raises(TypeError):
        run()


def test_typer_exit_code_is_kept():
    def stop():
        raise typer.Exit(3)

    assert output.run_main(stop) == 3


def test_closed_stdout_exits_quietly():
    script = textwrap.dedent('''
        import sys
        from panoptes_cli.commands import output
        def stream():
            for number in range(200000):
                output.emit_record({"number": number})
        sys.exit(output.run_main(stream))
    ''')
    writer = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    first_line = writer.stdout.readline()
    writer.stdout.close()
    status = writer.wait(timeout=60)
    assert json.loads(first_line) == {'number': 0}
    assert status == 0
    assert writer.stderr.read() == b''


def test_cli_import_loads_no_heavy_module():
    code = ('import sys, panoptes_cli.commands.main; '
            f'print([m for m in {HEAVY_MODULES!r} if m in sys.modules])')
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == '[]'


def test_executable_and_python_m_agree(run_panoptes):
    via_script = run_panoptes('--version', check=True).stdout
    via_module = subprocess.run([sys.executable, '-m', 'panoptes_cli', '--version'],
                                capture_output=True, text=True, check=True).stdout
    assert via_script == via_module != ''


def test_executable_usage_error_status(run_panoptes):
    result = run_panoptes('time', 'now', '--format', 'fortnight')
    assert result.returncode == 2
    assert "'fortnight' is not one of" in result.stderr


def test_json_is_indented_only_on_a_terminal(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2020-01-01 00:00:00')
    result = cli('time', 'now')
    assert result.stdout.count('\n') == 1
