"""What ships: the wheel's layout, the installer and the Docker image definition."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import IN_CI, REPO_ROOT, require_program

DOCKER = REPO_ROOT / 'docker'


def debian_packages():
    lines = (REPO_ROOT / 'panoptes_cli' / 'data' / 'debian-packages.txt').read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith('#')]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--quiet', '-w', str(out), str(REPO_ROOT)], check=True, capture_output=True)
    (path,) = out.glob('panoptes_cli-*.whl')
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


@pytest.mark.slow
def test_wheel_maps_commands_into_the_package(wheel):
    assert 'panoptes_cli/commands/main.py' in wheel
    assert not any(name.startswith('commands/') for name in wheel)


@pytest.mark.slow
def test_wheel_ships_marker_and_default_config(wheel):
    assert 'panoptes_cli/py.typed' in wheel
    assert any(re.match(r'panoptes_cli/data/.+\.yaml$', name) for name in wheel)


@pytest.mark.slow
def test_wheel_has_every_subpackage(wheel):
    packages = {str(p.parent.relative_to(REPO_ROOT)).replace('/', '.')
                for p in (REPO_ROOT / 'panoptes_cli').rglob('__init__.py')}
    shipped = {name.rsplit('/', 1)[0].replace('/', '.') for name in wheel
               if name.endswith('/__init__.py')}
    assert packages <= shipped


@pytest.mark.slow
def test_console_script_entry_point(wheel):
    assert any(name.endswith('entry_points.txt') for name in wheel)


def test_dockerfile_passes_hadolint():
    hadolint = require_program('hadolint')
    result = subprocess.run([hadolint, str(DOCKER / 'Dockerfile')], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r'\\\n', ' ', (DOCKER / 'Dockerfile').read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith('#')]


def accepted_by_panoptes(args: list[str]) -> bool:
    """True if ``panoptes ARGS`` parses: its options exist (checked with --help, which runs nothing)."""
    from typer.testing import CliRunner

    from panoptes_cli.commands.main import app

    return CliRunner().invoke(app, [*args, '--help']).exit_code == 0


def test_dockerfile_runs_panoptes_config_server_by_default():
    instructions = dockerfile_instructions()
    last = {name: value for name, value in instructions}
    assert json.loads(last['ENTRYPOINT']) == ['panoptes']
    command = json.loads(last['CMD'])
    assert command[:2] == ['config', 'run'] and accepted_by_panoptes(command)
    assert last['USER'].split(':')[0] not in ('root', '0')
    for name, value in instructions:
        if name == 'COPY':
            assert (REPO_ROOT / value.split()[0]).exists(), value


def test_dockerfile_and_installer_share_the_package_list():
    assert 'debian-packages.txt' in (DOCKER / 'Dockerfile').read_text()
    assert 'panoptes_cli/data/debian-packages.txt' in (REPO_ROOT / 'install.sh').read_text()
    assert {'astrometry.net', 'libcfitsio-bin', 'dcraw', 'libimage-exiftool-perl',
            'ffmpeg'} <= set(debian_packages())


@pytest.mark.skipif(shutil.which('dpkg-query') is None, reason='not a Debian host')
def test_docker_packages_are_installed_on_this_host():
    """The Dockerfile's apt step is what install.sh ran on this host: the packages are here."""
    missing = [package for package in debian_packages()
               if 'install ok installed' not in subprocess.run(
                   ['dpkg-query', '-W', '-f=${Status}', package],
                   capture_output=True, text=True).stdout]
    if missing and not IN_CI:
        pytest.skip(f'run ./install.sh to install {missing}')
    assert missing == []


def test_compose_mounts_a_config_directory_and_pandir():
    from ruamel.yaml import YAML

    compose = YAML(typ='safe').load(DOCKER / 'compose.yaml')
    service = compose['services']['config-server']
    assert accepted_by_panoptes(service['command'])
    targets = [re.sub(r'\$\{[^}]*\}', 'source', volume).split(':')[1] for volume in service['volumes']]
    # A directory, not the file: the server saves <name>_local.yaml beside the config.
    assert str(Path(service['environment']['PANOPTES_CONFIG_FILE']).parent) in targets
    pandir = dict(dockerfile_instructions())['ENV'].split('PANDIR=')[1].split()[0]
    assert pandir in targets


def test_compose_fleet_postgres_is_opt_in_and_local():
    from ruamel.yaml import YAML

    postgres = YAML(typ='safe').load(DOCKER / 'compose.yaml')['services']['postgres']
    assert postgres['profiles'] == ['fleet']
    assert all(port.startswith('127.0.0.1:') for port in postgres['ports'])


def test_compose_cluster_is_opt_in_and_its_workers_share_pandir():
    from ruamel.yaml import YAML

    services = YAML(typ='safe').load(DOCKER / 'compose.yaml')['services']
    scheduler, worker = services['dask-scheduler'], services['dask-worker']
    assert scheduler['profiles'] == worker['profiles'] == ['cluster']
    assert all(port.startswith('127.0.0.1:') for port in scheduler['ports'])
    port = scheduler['command'][scheduler['command'].index('--port') + 1]
    assert worker['command'][0] == f'tcp://dask-scheduler:{port}'
    pandir = dict(dockerfile_instructions())['ENV'].split('PANDIR=')[1].split()[0]
    assert f'pandir:{pandir}' in worker['volumes']
    # The image ships the dask command: it comes with panoptes-cli's dependencies.
    assert any(dependency.startswith('distributed') for dependency in
               tomllib.loads((REPO_ROOT / 'pyproject.toml').read_text())['project']['dependencies'])


def test_installer_is_valid_bash():
    subprocess.run(['bash', '-n', str(REPO_ROOT / 'install.sh')], check=True)
    assert Path(REPO_ROOT / '.ci' / 'run').read_text().strip().endswith('./install.sh test')
