"""Generated docs (completions, man pages, CLI reference) are current and complete."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, require_program

sys.path.insert(0, str(REPO_ROOT / 'docs'))
import generate  # noqa: E402  (docs/generate.py, the one script that regenerates them)

COMMANDS = list(generate.command_paths())
LEAVES = [words for words, _ in COMMANDS if len(words) == 2]


def command_object(words):
    import typer.main

    from panoptes_cli.commands.main import app

    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    return command


@pytest.mark.slow
def test_committed_files_match_what_the_script_generates():
    require_program('help2man')
    result = subprocess.run([sys.executable, str(REPO_ROOT / 'docs' / 'generate.py'), '--check'],
                            capture_output=True, text=True)
    assert result.returncode == 0, (
        f'{result.stderr}run `python docs/generate.py` and commit the result')


@pytest.mark.parametrize('words', LEAVES, ids=' '.join)
def test_every_command_has_help_with_an_example(words):
    help_text = command_object(words).help or ''
    assert help_text.strip(), f'panoptes {" ".join(words)} has no help text'
    assert re.search(r'^\s*Examples?:', help_text, re.M), \
        f'panoptes {" ".join(words)} --help shows no example'
    assert f'panoptes {" ".join(words)}' in help_text.split('Example', 1)[1]


@pytest.mark.parametrize('words', [w for w, _ in COMMANDS], ids=lambda w: ' '.join(w) or 'panoptes')
def test_every_command_is_in_the_reference_and_has_a_man_page(words):
    title = ' '.join(['panoptes', *words])
    assert f'## `{title}`' in (REPO_ROOT / 'docs' / 'cli.md').read_text()
    assert (REPO_ROOT / 'man' / f'{"-".join(["panoptes", *words])}.1').exists()


@pytest.mark.parametrize('words', LEAVES, ids=' '.join)
def test_man_pages_list_every_option_and_argument(words):
    page = (REPO_ROOT / 'man' / f'{"-".join(["panoptes", *words])}.1').read_text()
    page = page.replace('\\-', '-').replace('\\fB', '').replace('\\fR', '').replace('\\fI', '')
    for param in command_object(words).params:
        names = param.opts if param.param_type_name == 'option' else [param.human_readable_name]
        assert any(name in page or name.upper() in page for name in names), \
            f'{param.name} missing from the man page of panoptes {" ".join(words)}'


def test_man_pages_document_exit_status_and_environment():
    page = (REPO_ROOT / 'man' / 'panoptes.1').read_text()
    for word in ('EXIT STATUS', 'ENVIRONMENT', 'PANDIR', 'PANOPTES_CONFIG_FILE',
                 'PANOPTES_CONFIG_HOST', 'PANOPTES_CONFIG_PORT', 'POCSTIME', 'PANOPTES_DEBUG',
                 'PANOPTES_DB_TYPE', 'PANOPTES_DB_NAME'):
        assert word in page


def test_man_page_renders():
    man = require_program('man')
    result = subprocess.run([man, '-l', str(REPO_ROOT / 'man' / 'panoptes.1')],
                            capture_output=True, text=True, env={'MANPAGER': 'cat', 'COLUMNS': '80',
                                                                'PATH': '/usr/bin:/bin'})
    assert result.returncode == 0, result.stderr
    assert 'EXIT STATUS' in result.stdout and 'panoptes' in result.stdout


@pytest.mark.parametrize('shell, name', [('bash', 'panoptes.bash'), ('zsh', '_panoptes'),
                                         ('fish', 'panoptes.fish')])
def test_completion_scripts_are_committed(shell, name):
    text = (REPO_ROOT / 'completions' / name).read_text()
    # Each file is its own shell's script (Typer once wrote bash's into all three).
    assert f'_PANOPTES_COMPLETE=complete_{shell}' in text


@pytest.mark.slow
def test_bash_completion_is_valid_bash_and_completes_groups():
    subprocess.run(['bash', '-n', str(REPO_ROOT / 'completions' / 'panoptes.bash')], check=True)
    env = dict(os.environ, _PANOPTES_COMPLETE='complete_bash', COMP_WORDS='panoptes fi',
               COMP_CWORD='1')
    completed = subprocess.run(['panoptes'], env=env, capture_output=True, text=True)
    assert 'fits' in completed.stdout.split()
