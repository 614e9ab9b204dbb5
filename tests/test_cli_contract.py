"""The one error and output contract every ``panoptes`` command follows."""

import json
import subprocess
import sys
import textwrap

import pytest
import typer

from conftest import python_output
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
    assert python_output(code) == '[]'


@pytest.mark.slow
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


def test_json_is_indented_on_a_pretended_terminal(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2020-01-01 00:00:00')
    with output.use_environment(output.Environment(stdout_isatty=True)):
        result = cli('time', 'now')
    assert result.stdout.startswith('{\n  "iso": "2020-01-01T00:00:00.000"')


def test_environment_detects_pipes():
    env = output.Environment.detect()
    assert env.width > 0
    assert output.environment() == env


def test_exit_statuses_are_named_once():
    assert [int(status) for status in output.ExitStatus] == [0, 1, 2, 130, 143]


def test_csv_flattens_nested_keys_as_dotted_columns(capsys):
    with output.output_mode(output.Format.csv):
        output.emit_record({'filename': 'a.fits', 'header': {'RA': 1.5, 'OBJECT': 'M42'}})
        output.emit_record({'filename': 'b, c.fits', 'header': {'RA': None}, 'tags': [1, 2]})
    assert capsys.readouterr().out == (
        'filename,header.RA,header.OBJECT,tags\n'
        'a.fits,1.5,M42,\n'
        '"b, c.fits",,,"[1, 2]"\n')


def test_tsv_and_table(capsys):
    with output.output_mode(output.Format.tsv):
        output.emit_json([{'a': 1, 'b': {'c': True}}])
    assert capsys.readouterr().out == 'a\tb.c\n1\ttrue\n'
    with output.output_mode(output.Format.table):
        output.emit_record({'filename': 'a.fits', 'header': {'RA': 1.5}})
    table = capsys.readouterr().out
    assert 'header.RA' in table and 'a.fits' in table and '1.5' in table


def test_rows_are_written_even_when_the_command_fails(capsys):
    with pytest.raises(KeyboardInterrupt), output.output_mode(output.Format.csv):
        output.emit_record({'reading': 1})
        raise KeyboardInterrupt
    assert capsys.readouterr().out == 'reading\n1\n'


def test_one_format_at_a_time(cli):
    result = cli('time', 'now', '--csv', '--table')
    assert result.exit_code == 2
    assert 'choose one of --csv, --table' in result.stderr


def test_raw_prints_strings_without_quotes(cli, tmp_path):
    config = tmp_path / 'pocs.yaml'
    config.write_text('pan_id: PAN000\nlocation:\n  elevation: 3400.0 m\n')
    assert cli('config', 'get', 'pan_id', '--file', config, '-r').stdout == 'PAN000\n'
    assert cli('config', 'get', 'pan_id', '--file', config).stdout == '"PAN000"\n'
    assert cli('config', 'get', 'location', '--file', config, '--raw').stdout == (
        '{"elevation": "3400.0 m"}\n')


def _stdin(text: bytes):
    import io

    return io.BufferedReader(io.BytesIO(text))


def test_stdin_names_are_paths_or_panoptes_records():
    lines = (b'a.fits\n\n  b.fits  \n{"filename": "c.cr2", "output": "c.fits"}\n'
             b'{"filename": "d.fits", "solved": true}\n"e.fits"\n'
             b'{"filename": "f.cr2", "output": null}\n')
    assert list(output.stdin_names(_stdin(lines))) == [
        'a.fits', 'b.fits', 'c.fits', 'd.fits', 'e.fits', 'f.cr2']


def test_stdin_lines_naming_no_file_are_failed_items(capsys):
    def run():
        with output.Batch() as batch:
            assert list(batch.inputs(['x.fits', '-', 'y.fits'])) == ['x.fits', 'z.fits', 'y.fits']

    import sys

    from unittest import mock

    text = '{"temp": 3}\n{not json\nz.fits\n[1]\n'
    with mock.patch.object(sys, 'stdin', mock.Mock(buffer=_stdin(text.encode()))):
        assert output.run_main(run) == 1
    assert capsys.readouterr().err.splitlines() == [
        'Error: stdin: line 1: a record with no "output" or "filename" (keys: temp)',
        'Error: stdin: line 2: not a file name nor a JSON record',
        'Error: stdin: line 4: not a file name nor a JSON record',
    ]


def test_fits_bytes_on_stdin_are_a_short_usage_error(cli, shared_data):
    result = cli('fits', 'header', '-', input=(shared_data / 'tiny.fits').read_bytes())
    assert result.exit_code == 2
    assert 'stdin holds FITS (or other binary) data, not file names' in result.stderr
    assert 'SIMPLE' not in result.stderr and len(result.stderr) < 400


@pytest.mark.slow
def test_names_on_stdin_are_worked_on_as_they_arrive(shared_data):
    # The first record comes out while stdin is still open: streaming, not read-all.
    proc = subprocess.Popen([sys.executable, '-m', 'panoptes_cli', 'fits', 'header', '-k',
                             'IMAGEID', '-'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(f'{shared_data / "tiny.fits"}\n'.encode())
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())
        assert first['header'] == {'IMAGEID': 'PAN001_XXXXXX_20160909T081152'}
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_progress_never_shares_a_line_with_data(tmp_path, shared_data):
    # stdout and stderr on one terminal, as a user running a batch interactively sees them.
    import os
    import pty
    import shutil

    names = []
    for number in range(4):
        names.append(tmp_path / f'frame{number}.fits')
        shutil.copy(shared_data / 'tiny.fits', names[-1])
    leader, follower = pty.openpty()
    proc = subprocess.Popen([shutil.which('panoptes'), 'fits', 'pack', '-j', '1', *names],
                            stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, COLUMNS='100', TERM='xterm'))
    os.close(follower)
    shown = b''
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    assert 'Packing' in shown.decode(errors='replace')
    lines = shown.decode(errors='replace').split('\n')
    data = [line for line in lines if '"output"' in line]
    assert len(data) == 4
    for line in data:
        # What the terminal keeps of the line after carriage returns and erases: the data alone.
        visible = line.split('\r')[-2 if line.endswith('\r') else -1]
        visible = visible.replace('\x1b[2K', '')
        assert visible.startswith('{"filename"'), repr(line)


def test_runner_yields_every_outcome_as_items_arrive():
    from panoptes_cli.runner import make_runner

    def items():
        yield from (4, -1, 'x', 9)

    outcomes = list(make_runner(jobs=2).map_unordered(abs, items()))
    assert sorted(o.value for o in outcomes if o.error is None) == [1, 4, 9]
    (failed,) = [o for o in outcomes if o.error is not None]
    assert failed.item == 'x' and isinstance(failed.error, TypeError)
    assert [o.value for o in make_runner(jobs=1).map_unordered(abs, iter([-3]))] == [3]


def test_runner_refuses_no_jobs():
    from panoptes_cli.runner import make_runner

    with pytest.raises(ValueError, match='at least 1'):
        make_runner(jobs=-1)


# ---------------------------------------------------------------------------------------
# The contract, checked on every command the app has (found by walking it, so a command
# added later is held to it without touching this file).


def _leaf_commands():
    import typer.main

    from panoptes_cli.commands.main import app

    def walk(command, words):
        if hasattr(command, 'commands'):
            for name, sub in command.commands.items():
                yield from walk(sub, [*words, name])
        else:
            yield ' '.join(words), command

    return dict(walk(typer.main.get_command(app), []))


COMMANDS = _leaf_commands()
FILE_COMMANDS = sorted(name for name, command in COMMANDS.items()
                       if any(param.name == 'files' and param.nargs == -1
                              for param in command.params))
# Commands that print no records, and why.
NO_RECORDS = {
    'config run': 'a server in the foreground: it logs, it prints no data',
    'config stop': 'prints nothing',
    'db clear-current': 'prints nothing',
    'serial simulate': "the board's own report lines, as a serial device sends them",
}
# Commands whose answer is one value: -r/--raw prints a string bare.
SCALAR = {'config get', 'config set', 'time now'}


def _options(command):
    return [param for param in command.params if param.param_type_name == 'option']


def test_the_walk_finds_the_commands():
    assert {'fits header', 'cr2 convert', 'image pretty', 'db find', 'time now'} <= set(COMMANDS)
    assert {'fits header', 'fits wcs', 'image background', 'cr2 convert'} <= set(FILE_COMMANDS)


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_output_options(name):
    opts = {opt for param in COMMANDS[name].params for opt in param.opts}
    if name in SCALAR:
        assert {'-r', '--raw'} <= opts
    if name in NO_RECORDS:
        assert '--csv' not in opts
    elif name not in SCALAR or name == 'time now':
        assert {'--csv', '--tsv', '--table'} <= opts


def test_a_flag_means_one_thing_everywhere():
    meanings = {}
    for name, command in COMMANDS.items():
        for param in _options(command):
            longs = tuple(sorted(opt for opt in param.opts if opt.startswith('--')))
            for short in (opt for opt in param.opts if not opt.startswith('--')):
                meanings.setdefault(short, {}).setdefault(longs, []).append(name)
    clashes = {short: uses for short, uses in meanings.items() if len(uses) > 1}
    assert clashes == {}
    assert set(meanings['-o']) == {('--output-dir',)}
    assert set(meanings['-j']) == {('--jobs',)}
    assert set(meanings['-n']) == {('--limit',)}
    assert set(meanings['-t']) == {('--title',)}


@pytest.mark.parametrize('name', sorted(name for name, command in COMMANDS.items()
                                        if any('--jobs' in p.opts for p in command.params)))
def test_jobs_is_at_least_one(cli, name, tmp_path):
    result = cli(*name.split(), '--jobs', '0', tmp_path)
    assert result.exit_code == 2
    assert "'--jobs'" in result.stderr


def _bad_values(command):
    """(option, a value its type refuses) for each option that takes a checked value."""
    for param in _options(command):
        if param.is_flag or param.name in ('help',):
            continue
        kind = param.type
        if getattr(kind, 'choices', None):
            yield param, 'no-such-choice'
        elif kind.name.split()[0] in ('int', 'integer', 'float'):
            yield param, 'not-a-number'
        elif getattr(kind, 'exists', False):
            yield param, '/no/such/path'


BAD_VALUES = [pytest.param(name, param.opts[0], value, id=f'{name}-{param.opts[0]}')
              for name, command in sorted(COMMANDS.items())
              for param, value in _bad_values(command)]


@pytest.mark.parametrize(('name', 'option', 'value'), BAD_VALUES)
def test_a_bad_option_value_is_a_usage_error(cli, name, option, value):
    # The bad option first: Click checks values in the order they are given.
    result = cli(*name.split(), option, value, 'x', 'y')
    assert result.exit_code == 2, result.output
    assert result.stdout == ''
    assert option in result.stderr


@pytest.mark.parametrize('name', FILE_COMMANDS)
def test_many_files_and_stdin_names_or_records(cli, name, tmp_path):
    # Two files on the command line around '-': stdin gives a path, then a record from
    # another panoptes command (its "output" is the file to use, not its "filename").
    result = cli(*name.split(), tmp_path / 'first.fits', '-', tmp_path / 'last.fits',
                 input=f'{tmp_path / "piped.fits"}\n'
                       f'{{"filename": "{tmp_path / "ignored.cr2"}", '
                       f'"output": "{tmp_path / "chained.fits"}"}}\n')
    assert result.exit_code == 1, result.output
    said = result.stdout + result.stderr
    for missing in ('first.fits', 'piped.fits', 'chained.fits', 'last.fits'):
        assert missing in said, (missing, said)
    assert 'ignored.cr2' not in said
    assert 'Traceback' not in said and 'internal error' not in said


@pytest.mark.parametrize('name', FILE_COMMANDS)
def test_fits_bytes_piped_in_are_a_usage_error(cli, name, shared_data):
    result = cli(*name.split(), '-', input=(shared_data / 'tiny.fits').read_bytes())
    assert result.exit_code == 2
    assert 'not file names' in result.stderr and len(result.stderr) < 500


def _samples(data_copy, shared_data, tmp_path):
    """A run of each file command (and of the others that print records) that succeeds."""
    import shutil

    from cr2_maker import preview_jpeg, sky_frame, write_cr2

    raster = sky_frame(64, 96)
    with_preview = write_cr2(tmp_path / 'preview.cr2', raster, preview=preview_jpeg(raster))
    index_dir = tmp_path / 'index'
    index_dir.mkdir()
    shutil.copy(shared_data / 'astrometry' / 'index-kic8462852-tycho2-p7.fits', index_dir)
    return {
        'fits header': [data_copy('tiny.fits')],
        'fits pack': [data_copy('tiny.fits', 'pack.fits')],
        'fits unpack': [data_copy('solved.fits.fz', 'unpack.fits.fz')],
        'fits solve': ['--index-dir', index_dir, data_copy('unsolved.fits')],
        'fits wcs': [shared_data / 'solved.fits.fz'],
        'cr2 convert': [data_copy('cr2/synthetic.cr2')],
        'cr2 exif': [shared_data / 'cr2' / 'synthetic.cr2'],
        'cr2 preview': [with_preview],
        'image pretty': [data_copy('tiny.fits', 'pretty.fits')],
        'image focus': [shared_data / 'tiny.fits'],
        'image background': [shared_data / 'tiny.fits'],
    }


@pytest.mark.slow
def test_record_keys_come_from_one_list(cli, data_copy, shared_data, tmp_path):
    from panoptes_cli.commands.options import RECORD_KEYS

    samples = _samples(data_copy, shared_data, tmp_path)
    assert set(samples) == set(FILE_COMMANDS), 'give each file command a sample run'
    for name, args in samples.items():
        result = cli(*name.split(), *args)
        assert result.exit_code == 0, (name, result.stderr)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert records, name
        for record in records:
            assert set(record) <= set(RECORD_KEYS), (name, set(record) - set(RECORD_KEYS))
            assert record.get('filename') == str(args[-1]), name


def test_records_as_csv_tsv_and_a_table(cli, shared_data):
    files = [shared_data / 'tiny.fits', shared_data / 'solved.fits.fz']
    csv = cli('fits', 'header', '-k', 'EXPTIME', '-k', 'DEC-*', '--csv', *files)
    assert csv.exit_code == 0, csv.stderr
    assert csv.stdout.splitlines() == [
        'filename,hdu,header.EXPTIME,header.DEC-MNT',
        f'{files[0]},0,120.4,44.456875',
        f'{files[1]},1,120.4,44.456875',
    ]
    tsv = cli('image', 'focus', '--tsv', '-j', '1', files[0])
    assert tsv.stdout.splitlines()[0] == 'filename\tvollath_F4\taxis'
    table = cli('fits', 'wcs', '--table', files[1])
    assert 'pixel_scale' in table.stdout and 'wcsinfo.imagew' in table.stdout


def test_ndjson_chains_from_one_command_to_the_next(cli, data_copy):
    cr2 = data_copy('cr2/synthetic.cr2')
    converted = cli('cr2', 'convert', cr2)
    assert converted.exit_code == 0, converted.stderr
    headers = cli('fits', 'header', '-k', 'EXPTIME', '-', input=converted.stdout)
    assert headers.exit_code == 0, headers.stderr
    (record,) = [json.loads(line) for line in headers.stdout.splitlines()]
    assert record['filename'] == str(cr2.with_suffix('.fits'))
    assert record['header'] == {'EXPTIME': 120.0}
    packed = cli('fits', 'pack', '-', input=headers.stdout)
    assert [json.loads(line)['output'] for line in packed.stdout.splitlines()] == [
        f'{cr2.with_suffix(".fits")}.fz']


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_help_examples_are_shown_as_written(cli, name):
    # Click re-wraps a paragraph unless a \b line comes before it.
    text = COMMANDS[name].help or ''
    assert 'Examples:' in text
    examples = text.split('Examples:', 1)[1]
    assert examples.lstrip().startswith('\b'), 'put a \\b line before the examples'
    lines = [line.strip() for line in examples.splitlines() if line.strip() not in ('', '\b')]
    shown = {line.strip() for line in cli(*name.split(), '--help', env={'COLUMNS': '200'})
             .stdout.splitlines()}
    assert [line for line in lines if line not in shown] == []


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_placeholders_are_styled_one_way(cli, name):
    import re

    shown = cli(*name.split(), '--help').stdout
    usage = shown.splitlines()[0]
    assert not re.search(r'[{<]|\[[a-z_]+\]', usage), usage
    assert not re.search(r'(^|\s)--?[\w-]+ <', shown, re.M), shown
