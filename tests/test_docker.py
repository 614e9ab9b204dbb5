"""The Docker image, built from docker/Dockerfile with buildah and used as an operator would.

buildah builds and runs without a container daemon (``--isolation chroot``), sharing the
host's network, so the config server inside is queried from the host on a free port. The
image is built once per test session. Where no container registry can be reached, the
Dockerfile's base image is replaced by a stand-in made from Debian's packages (see
``make_standin_base``), kept in buildah's storage for later runs on the same machine.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from ruamel.yaml import YAML

from conftest import REPO_ROOT, free_port, require_program

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCKER = REPO_ROOT / 'docker'
DATA = REPO_ROOT.parent / 'shared' / 'data'
# One test image per checkout: test sessions of two work trees on one machine share
# buildah's storage, and each must run its own code.
IMAGE = f'localhost/panoptes-cli:test-{hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:8]}'
STANDIN_LABEL = 'org.panoptes-cli.stand-in'
HOST_CA_BUNDLE = Path('/etc/ssl/certs/ca-certificates.crt')
BUILD_TIMEOUT = 25 * 60


def report(config, message: str) -> None:
    """Print a line in pytest's own output, whatever the capture mode."""
    reporter = config.pluginmanager.get_plugin('terminalreporter')
    capture = config.pluginmanager.get_plugin('capturemanager')
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f'[docker] {message}')


def buildah(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(['buildah', *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f'buildah {" ".join(args)} failed ({result.returncode}): {result.stderr.strip()}')
    return result


def dockerfile_base() -> str:
    """The image the Dockerfile starts FROM, fully qualified as buildah stores it."""
    name = re.search(r'^FROM\s+(\S+)', (DOCKER / 'Dockerfile').read_text(), re.M).group(1)
    if '/' not in name:
        name = f'library/{name}'
    if '.' not in name.split('/')[0]:
        name = f'docker.io/{name}'
    return name


def host_debian_sources(release: str) -> tuple[str, str]:
    """The host's apt entries for Debian RELEASE (deb822 text) and its main mirror.

    The stand-in's apt gets the host's own sources, so the build reaches Debian the way
    the host does (a local mirror, a snapshot); without any, Debian's public mirrors.
    """
    blocks, mirror = [], None
    for path in sorted(Path('/etc/apt/sources.list.d').glob('*.sources')):
        for block in path.read_text().split('\n\n'):
            fields = dict(re.findall(r'^(\w[\w-]*):\s*(.*)$', block, re.M))
            if fields.get('Types', '').split()[:1] == ['deb'] and any(
                    suite.split('-')[0] == release for suite in fields.get('Suites', '').split()):
                blocks.append(block.strip())
                if mirror is None and release in fields['Suites'].split():
                    mirror = fields['URIs'].split()[0]
    if not blocks:
        blocks = [f'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {release} {release}-updates\n'
                  'Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg',
                  f'Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: {release}-security\n'
                  'Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg']
    return '\n\n'.join(blocks) + '\n', mirror or 'http://deb.debian.org/debian'


def slim_like_debian_images(rootfs: Path) -> None:
    """Drop documentation from ROOTFS, and keep dpkg from adding more, as Debian's -slim images do."""
    (rootfs / 'etc/dpkg/dpkg.cfg.d/docker').write_text(
        'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n'
        'path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n'
        'path-exclude /usr/share/locale/*\npath-exclude /usr/share/groff/*\n'
        'path-exclude /usr/share/lintian/*\n')
    for path in (rootfs / 'usr/share/doc').rglob('*'):
        if path.is_file() and path.name != 'copyright' or path.is_symlink():
            path.unlink()
    for directory in ('man', 'info', 'locale', 'groff', 'lintian'):
        for path in (rootfs / 'usr/share' / directory).glob('*'):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def make_standin_base(base: str, workdir: Path) -> None:
    """Build BASE (a python:3.X-slim-RELEASE image) from Debian packages and tag it so.

    It provides what the official image does for a Dockerfile: `python3`, `pip` and `venv`
    first on PATH in /usr/local, an interpreter of its own whose packages do not shadow
    those of Debian's /usr/bin/python3 (astrometry.net's helper scripts run on Debian's
    numpy), and apt set up for the same release.
    """
    release = base.rsplit(':', 1)[1].rsplit('-', 1)[1]
    sources, mirror = host_debian_sources(release)
    rootfs = workdir / 'rootfs'
    debootstrap = require_program('debootstrap')
    result = subprocess.run(
        [debootstrap, '--variant=minbase', '--include=python3,python3-venv,ca-certificates',
         release, str(rootfs), mirror], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f'debootstrap {release} from {mirror} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}')
    subprocess.run(['chroot', str(rootfs), 'python3', '-m', 'venv', '/usr/local'], check=True)
    for script in (rootfs / 'usr/local/bin').glob('[Aa]ctivate*'):
        script.unlink()
    slim_like_debian_images(rootfs)
    (rootfs / 'etc/apt/sources.list').unlink(missing_ok=True)
    (rootfs / 'etc/apt/sources.list.d/debian.sources').write_text(sources)
    for path in [*(rootfs / 'var/cache/apt').rglob('*.deb'), *(rootfs / 'var/lib/apt/lists').glob('*_*')]:
        path.unlink()
    tarball = workdir / 'rootfs.tar'
    subprocess.run(['tar', '-C', str(rootfs), '--exclude=./dev/*', '--exclude=./proc/*',
                    '--exclude=./sys/*', '-cf', str(tarball), '.'], check=True)
    shutil.rmtree(rootfs)
    container = buildah('from', 'scratch').stdout.strip()
    try:
        buildah('add', container, str(tarball), '/', timeout=600)
        buildah('config', '--env', 'LANG=C.UTF-8',
                '--env', 'PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin',
                '--cmd', '["python3"]',
                '--label', f'{STANDIN_LABEL}=debootstrap {release} {time.strftime("%Y-%m-%d")}',
                container)
        buildah('commit', '--rm', container, base, timeout=600)
    except BaseException:
        buildah('rm', container, check=False)
        raise
    finally:
        tarball.unlink(missing_ok=True)


def ensure_base(config, base: str, workdir: Path) -> None:
    """Have BASE in buildah's storage: kept from an earlier run, pulled, or a stand-in."""
    present = buildah('inspect', '--type', 'image', base, check=False)
    if present.returncode == 0:
        label = json.loads(present.stdout).get('OCIv1', {}).get('config', {}).get(
            'Labels', {}).get(STANDIN_LABEL)
        kind = f'the stand-in made from Debian packages ({label})' if label else 'pulled earlier'
        report(config, f'base image {base}: kept in local storage, {kind}')
        return
    pulled = buildah('pull', base, timeout=600, check=False)
    if pulled.returncode == 0:
        report(config, f'base image {base}: pulled from its registry')
        return
    reason = pulled.stderr.strip().splitlines()[-1] if pulled.stderr.strip() else 'no answer'
    report(config, f'base image {base}: no container registry reachable ({reason}); '
                   'making a STAND-IN from Debian packages (debootstrap + python3, pip, venv)')
    started = time.monotonic()
    make_standin_base(base, workdir)
    report(config, f'stand-in {base} made in {time.monotonic() - started:.0f} s')


@pytest.fixture(scope='session')
def image(request, tmp_path_factory) -> str:
    """Build docker/Dockerfile with buildah once per session; return the image name."""
    require_program('buildah')
    if os.geteuid() != 0:
        pytest.skip('buildah runs here as root only: rootless buildah needs subordinate '
                    'uid ranges this machine does not set up')
    workdir = tmp_path_factory.mktemp('docker-build')
    base = dockerfile_base()
    with open(Path(tempfile.gettempdir()) / 'panoptes-cli-docker-base.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # one session makes the stand-in, the others wait
        ensure_base(request.config, base, workdir)
    command = ['buildah', 'bud', '--isolation', 'chroot', '--format', 'docker',
               '--pull=never', '-f', str(DOCKER / 'Dockerfile'), '-t', IMAGE]
    if HOST_CA_BUNDLE.is_file():
        # The host's bundle holds the CA of any TLS proxy between it and PyPI: pip in
        # the build trusts what the host trusts. Mounted over the image's own file, so
        # nothing of it stays in the image.
        command += ['-v', f'{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro']
    previous = buildah('images', '--quiet', '--no-trunc', IMAGE, check=False).stdout.strip()
    log = workdir / 'build.log'
    started = time.monotonic()
    with log.open('w') as out:
        result = subprocess.run([*command, str(REPO_ROOT)], stdout=out, stderr=subprocess.STDOUT,
                                timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(f'building the image failed after {seconds:.0f} s; the end of '
                    f'{log}:\n{log.read_text()[-4000:]}')
    if previous:   # now untagged: remove it, so buildah's storage keeps one test image
        buildah('rmi', previous, check=False)
    size = buildah('images', '--format', '{{.Size}}', IMAGE).stdout.strip()
    report(request.config, f'image {IMAGE} built in {seconds:.0f} s, {size}')
    return IMAGE


@pytest.fixture(scope='session')
def container(image):
    """A working container of the image, for one-off commands."""
    name = buildah('from', '--pull=never', image).stdout.strip()
    yield name
    buildah('rm', name, check=False)


def run_inside(container: str, *command: str, mounts=(), env=None, user=None, timeout: float = 300
               ) -> subprocess.CompletedProcess:
    """Run COMMAND in CONTAINER as the image's user (or USER), in its WORKDIR, with its environment."""
    options = [f'-v={source}:{target}' for source, target in mounts]
    options += [f'--user={user}'] if user else []
    options += [f'--env={key}={value}' for key, value in (env or {}).items()]
    return subprocess.run(['buildah', 'run', '--isolation', 'chroot', *options, container,
                           '--', *command], capture_output=True, text=True, timeout=timeout)


def owned_by_image_user(path: Path) -> Path:
    """Make PATH (a directory and what it holds) the image user's, uid 1000."""
    for item in [path, *path.rglob('*')]:
        os.chown(item, 1000, 1000)
    return path


def test_image_runs_panoptes_version(container):
    from panoptes_cli import __version__
    result = run_inside(container, 'panoptes', '--version')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'panoptes-cli {__version__}'


def test_image_has_the_dask_commands_of_the_compose_cluster(container):
    for role in ('scheduler', 'worker'):
        result = run_inside(container, 'dask', role, '--help')
        assert result.returncode == 0, result.stderr


def test_image_user_can_open_serial_devices_and_write_pandir(container):
    result = run_inside(container, 'sh', '-c', 'id -u; id -Gn; date +%Z; echo "$PANDIR"; '
                        'touch "$PANDIR/written" && echo ok')
    assert result.returncode == 0, result.stderr
    uid, groups, zone, pandir, written = result.stdout.split('\n')[:5]
    assert uid == '1000' and 'dialout' in groups.split()
    assert zone == 'UTC' and pandir == '/var/panoptes' and written == 'ok'


def test_image_has_no_docs_or_build_caches(container):
    result = run_inside(container, 'find', '/usr/share/doc', '/usr/share/man', '/usr/share/locale',
                        '/var/lib/apt/lists', '/var/cache/apt', '/root', '/tmp', '/opt', '-type', 'f',
                        '!', '-name', 'copyright', '!', '-name', 'lock', '!', '-name', '.*', user='root')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_image_solves_a_frame_with_its_own_indexes(container, tmp_path):
    frames = tmp_path / 'frames'
    frames.mkdir()
    shutil.copy(DATA / 'unsolved.fits', frames)
    owned_by_image_user(frames)
    result = run_inside(container, 'panoptes', 'fits', 'solve', '--timeout', '240',
                        'frames/unsolved.fits', mounts=[(frames, '/var/panoptes/frames')])
    assert result.returncode == 0, result.stdout + result.stderr
    solved = json.loads(result.stdout)
    assert solved['solved'] is True
    assert solved['ra'] == pytest.approx(303.21, abs=0.05)
    assert solved['dec'] == pytest.approx(46.02, abs=0.05)
    header = fits.getheader(frames / 'unsolved.fits')
    assert header['CTYPE1'].startswith('RA---TAN')


def test_image_converts_a_cr2_to_fits(container, tmp_path):
    raws = tmp_path / 'raws'
    raws.mkdir()
    shutil.copy(DATA / 'cr2' / 'synthetic.cr2', raws)
    owned_by_image_user(raws)
    result = run_inside(container, 'panoptes', 'cr2', 'convert', 'raws/synthetic.cr2',
                        mounts=[(raws, '/var/panoptes/raws')])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['output'] == 'raws/synthetic.fits'
    on_host = tmp_path / 'on-host'
    on_host.mkdir()
    assert host_cli('cr2', 'convert', '-o', str(on_host), str(raws / 'synthetic.cr2')).returncode == 0
    with fits.open(raws / 'synthetic.fits') as inside, fits.open(on_host / 'synthetic.fits') as outside:
        np.testing.assert_array_equal(inside[0].data, outside[0].data)
        np.testing.assert_array_equal(np.sort(inside[0].data, axis=None),
                                      np.sort(np.load(DATA / 'cr2' / 'synthetic.npy'), axis=None))
        assert inside[0].header['EXPTIME'] == 120


def compose_service(*files: str, name: str = 'config-server') -> dict:
    """Service NAME as compose merges FILES: later ones override, volumes by target."""
    service: dict = {}
    for file in files:
        override = YAML(typ='safe').load((DOCKER / file).read_text())['services'][name]
        volumes = {spec.split(':')[1]: spec for spec in service.get('volumes', [])}
        volumes.update({spec.split(':')[1]: spec for spec in override.pop('volumes', [])})
        service.update(override, volumes=list(volumes.values()))
    return service


def interpolate(text: str, variables: dict) -> str:
    """Compose's ${NAME:-default} substitution."""
    return re.sub(r'\$\{(\w+)(?::-([^}]*))?\}',
                  lambda match: variables.get(match[1]) or match[2] or '', text)


def horizon(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return u.Quantity(json.loads(result.stdout))


def host_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'panoptes_cli', *args], capture_output=True,
                          text=True, timeout=timeout)


def compose_mounts(service: dict, variables: dict, pandir: Path) -> list[str]:
    """buildah -v options for SERVICE's volumes, named volumes (PANDIR's) on the test's PANDIR."""
    mounts = []
    for spec in service['volumes']:
        source, target, *mode = interpolate(spec, variables).split(':')
        if not source.startswith(('/', '.')):
            source = str(pandir)
        mounts.append((target.count('/'), f'-v={source}:{target}' + (f':{mode[0]}' if mode else '')))
    return [option for _, option in sorted(mounts)]   # parents first, as compose mounts them


class ComposeConfigServer:
    """The compose file's config-server service run in the image by buildah, on PORT."""

    def __init__(self, image: str, service: dict, config_dir: Path, pandir: Path, port: int):
        self.port = port
        mounts = compose_mounts(service, {'PANOPTES_CONFIG_DIR': str(config_dir)}, pandir)
        env = {**service['environment'], 'PANOPTES_CONFIG_PORT': str(port)}
        self.env = [f'--env={key}={value}' for key, value in env.items()]
        self.container = buildah('from', '--pull=never', image).stdout.strip()
        self.process = subprocess.Popen(
            ['buildah', 'run', '--isolation', 'chroot', *mounts, *self.env, self.container,
             '--', 'panoptes', *service['command']],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f'the config server exited {self.process.returncode}: '
                            f'{self.process.stderr.read()}')
            if host_cli('config', 'get', 'name', '--port', str(self.port)).returncode == 0:
                return
            time.sleep(0.5)
        pytest.fail(f'the config server did not answer on port {self.port} in {timeout} s')

    def healthcheck(self, test: list) -> subprocess.CompletedProcess:
        assert test[0] == 'CMD'
        return subprocess.run(['buildah', 'run', '--isolation', 'chroot', *self.env,
                               self.container, '--', *test[1:]],
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> int:
        if self.process.poll() is None:
            host_cli('config', 'stop', '--port', str(self.port))
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        buildah('rm', self.container, check=False)
        return self.process.returncode


@pytest.fixture
def unit_config_dir(tmp_path) -> Path:
    """A unit's config directory as an operator mounts it: pocs.yaml, writable by uid 1000."""
    conf = tmp_path / 'conf'
    conf.mkdir()
    shutil.copy(DATA / 'testing.yaml', conf / 'pocs.yaml')
    return conf


@pytest.fixture
def pandir(tmp_path) -> Path:
    path = tmp_path / 'pandir-volume'
    path.mkdir()
    return owned_by_image_user(path)


def test_compose_config_service_serves_and_saves_beside_the_config(image, unit_config_dir, pandir):
    service = compose_service('compose.yaml')
    owned_by_image_user(unit_config_dir)
    server = ComposeConfigServer(image, service, unit_config_dir, pandir, free_port())
    try:
        server.wait_until_serving()
        port = ['--port', str(server.port)]
        assert json.loads(host_cli('config', 'get', 'name', *port).stdout) == 'Testing PANOPTES Unit'
        health = server.healthcheck(service['healthcheck']['test'])
        assert health.returncode == 0, health.stderr
        assert host_cli('config', 'set', 'location.horizon', '37 deg', *port).returncode == 0
        assert '37' in (unit_config_dir / 'pocs_local.yaml').read_text()
        assert horizon(host_cli('config', 'get', 'location.horizon', *port)) == 37 * u.deg
    finally:
        assert server.stop() == 0
    assert host_cli('config', 'get', 'name', *port).returncode == 1


def test_compose_readonly_config_keeps_changes_in_memory(image, unit_config_dir, pandir):
    service = compose_service('compose.yaml', 'compose.readonly.yaml')
    assert '--no-save-local' in service['command']
    before = sorted(path.name for path in unit_config_dir.iterdir())
    server = ComposeConfigServer(image, service, unit_config_dir, pandir, free_port())
    try:
        server.wait_until_serving()
        port = ['--port', str(server.port)]
        assert host_cli('config', 'set', 'location.horizon', '37 deg', *port).returncode == 0
        assert horizon(host_cli('config', 'get', 'location.horizon', *port)) == 37 * u.deg
    finally:
        assert server.stop() == 0
    assert sorted(path.name for path in unit_config_dir.iterdir()) == before


def test_compose_image_watch_service_runs_a_new_frame_through_the_pipeline(image, tmp_path, pandir):
    service = compose_service('compose.yaml', name='image-watch')
    images = tmp_path / 'images'
    images.mkdir()
    owned_by_image_user(images)
    mounts = compose_mounts(service, {'PANOPTES_IMAGES_DIR': str(images)}, pandir)
    container = buildah('from', '--pull=never', image).stdout.strip()
    watch = subprocess.Popen(['buildah', 'run', '--isolation', 'chroot', *mounts, container, '--',
                              'panoptes', *service['command']],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        arriving = images / '.unsolved.fits.part'
        shutil.copy(DATA / 'unsolved.fits', arriving)
        os.chown(arriving, 1000, 1000)
        arriving.rename(images / 'unsolved.fits')      # as a camera's writer would: complete at once
        deadline = time.monotonic() + 240
        while not (images / 'latest.jpg').exists() and time.monotonic() < deadline:
            assert watch.poll() is None, watch.stderr.read()
            time.sleep(1)
    finally:
        watch.terminate()
        try:
            watch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()
        buildah('rm', container, check=False)
    assert (images / 'unsolved.fits.fz').exists() and (images / 'unsolved.jpg').exists()
    assert fits.getheader(images / 'unsolved.fits.fz', 1)['CTYPE1'].startswith('RA---TAN')


def test_image_healthcheck_is_the_compose_one(image):
    inspected = json.loads(buildah('inspect', '--type', 'image', image).stdout)
    healthcheck = inspected['Docker']['config']['Healthcheck']['Test']
    assert healthcheck == compose_service('compose.yaml')['healthcheck']['test']
