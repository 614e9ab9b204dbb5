"""What ships: the wheel's layout, the installer and the Docker image definition."""

import re
import shutil
import subprocess
import sys
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


def test_wheel_maps_commands_into_the_package(wheel):
    assert 'panoptes_cli/commands/main.py' in wheel
    assert not any(name.startswith('commands/') for name in wheel)


def test_wheel_ships_marker_and_default_config(wheel):
    assert 'panoptes_cli/py.typed' in wheel
    assert any(re.match(r'panoptes_cli/data/.+\.yaml$', name) for name in wheel)


def test_wheel_has_every_subpackage(wheel):
    packages = {str(p.parent.relative_to(REPO_ROOT)).replace('/', '.')
                for p in (REPO_ROOT / 'panoptes_cli').rglob('__init__.py')}
    shipped = {name.rsplit('/', 1)[0].replace('/', '.') for name in wheel
               if name.endswith('/__init__.py')}
    assert packages <= shipped


def test_console_script_entry_point(wheel):
    assert any(name.endswith('entry_points.txt') for name in wheel)


def test_dockerfile_passes_hadolint():
    hadolint = require_program('hadolint')
    result = subprocess.run([hadolint, str(DOCKER / 'Dockerfile')], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_panoptes_config_server_by_default():
    text = (DOCKER / 'Dockerfile').read_text()
    assert 'ENTRYPOINT ["panoptes"]' in text
    assert 'CMD ["config", "run", "--public"]' in text
    assert re.search(r'^USER (?!root|0\b)', text, re.M)
    for source in re.findall(r'^COPY (\S+)', text, re.M):
        assert (REPO_ROOT / source).exists(), source


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


def test_compose_mounts_config_and_pandir():
    text = (DOCKER / 'compose.yaml').read_text()
    assert '/conf/unit.yaml' in text and 'pandir:/var/panoptes' in text
    assert 'PANOPTES_CONFIG_FILE: /conf/unit.yaml' in text


def test_installer_is_valid_bash():
    subprocess.run(['bash', '-n', str(REPO_ROOT / 'install.sh')], check=True)
    assert Path(REPO_ROOT / '.ci' / 'run').read_text().strip().endswith('./install.sh test')
