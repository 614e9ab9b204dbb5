"""The README, tried as a new user would: its shell examples run and succeed.

Every line of every ```sh block runs, block by block, in one bash process per block
inside a sandbox holding the files the examples name (copies of the shared data), with
PANDIR, HOME and the config port pointing into it. Only lines that install software or
need hardware are left out (UNSAFE below).
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT, free_port, require_program

UNSAFE = re.compile(r'\./install\.sh|\bpip\b|\bpython3? |\bvenv\b|/dev/tty')
# What to wait for after a line that starts something in the background.
READY = {
    'panoptes config run': 'until panoptes config get name >/dev/null 2>&1; do sleep 0.1; done',
    'panoptes serial simulate': 'until [ -e "$PANDIR/ttyTELEMETRY" ]; do sleep 0.1; done',
    'dask scheduler': 'timeout 60 bash -c "until (exec 3<>/dev/tcp/127.0.0.1/8786) 2>/dev/null; '
                      'do sleep 0.1; done" || { echo "dask scheduler did not start" >&2; exit 1; }',
}
# The README's Dask examples use Dask's default port; each run moves them to a free one.
DASK_PORT = '8786'


def readme_blocks():
    text = (REPO_ROOT / 'README.md').read_text()
    for number, block in enumerate(re.findall(r'```sh\n(.*?)```', text, re.S), start=1):
        lines = [line.strip() for line in block.replace('\\\n', ' ').splitlines()]
        runnable = [line for line in lines
                    if line and not line.startswith('#') and not UNSAFE.search(line)]
        if runnable:
            yield pytest.param(runnable, id=f'block{number}-{runnable[0].split()[1][:12]}')


def as_script(lines):
    script = ['set -u', "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    for line in lines:
        command = line.split(' #')[0].strip()
        if command.endswith('&'):
            script.append(command)
            script += [wait for start, wait in READY.items() if command.startswith(start)]
        else:
            quoted = command.replace("'", "'\\''")
            script.append(f"{{ {command} ; }} || {{ echo 'README example failed: {quoted}' >&2; exit 1; }}")
    return '\n'.join(script) + '\n'


@pytest.fixture
def sandbox(tmp_path, shared_data):
    """A working directory with every file the README's examples name."""
    home = tmp_path / 'home'
    pandir = home / 'pandir'
    for directory in ('night', 'raw', 'sky', 'focus-run', 'astrometry', 'conf', 'images'):
        (home / directory).mkdir(parents=True)
    (pandir / 'conf_files').mkdir(parents=True)
    (pandir / 'images').mkdir()

    def copy(source, target):
        shutil.copy(shared_data / source, home / target)
        (home / target).chmod(0o644)

    for source, target in [
        ('unsolved.fits', 'unsolved.fits'), ('solved.fits.fz', 'solved.fits.fz'),
        ('tiny.fits', 'tiny.fits'), ('tiny.fits', 'flat.fits'),
        ('unsolved.fits', 'night/a.fits'), ('unsolved.fits', 'night/b.fits'),
        ('solved.fits.fz', 'night/c.fits.fz'),
        ('cr2/synthetic.cr2', '20160909T081152.cr2'), ('cr2/synthetic.cr2', 'raw/x.cr2'),
        ('tiny.fits', 'focus-run/f1.fits'), ('unsolved.fits', 'focus-run/f2.fits'),
        ('testing.yaml', 'pocs.yaml'),
        ('astrometry/index-kic8462852-tycho2-p7.fits', 'astrometry/index-kic8462852.fits'),
    ]:
        copy(source, target)
    shutil.copy(home / 'pocs.yaml', pandir / 'conf_files' / 'pocs.yaml')
    from cr2_maker import preview_jpeg, sky_frame, write_cr2

    raster = sky_frame(48, 64)
    write_cr2(home / '20160909T081200.cr2', raster, preview=preview_jpeg(raster))
    (home / 'my-backend.cfg').write_text(f'index {home}/astrometry/index-kic8462852.fits\n')

    # A raw frame of real sky (unsolved.fits' pixels in a CR2), so a chain can solve it.
    import numpy as np
    from astropy.io import fits

    from cr2_maker import write_cr2

    sky = np.flipud(fits.getdata(shared_data / 'unsolved.fits')).astype(np.int64)
    write_cr2(home / 'sky' / '20160909T081152.cr2', np.clip(sky, 0, 16383).astype(np.uint16))

    frames = pandir / 'images/fields/KIC8462852/ee04d1/20160909T081152'
    frames.mkdir(parents=True)
    from PIL import Image

    for second in range(3):
        Image.new('L', (64, 48), color=40 * second).save(frames / f'20160909T0811{50 + second}.jpg')

    env = dict(os.environ, HOME=str(home), PANDIR=str(pandir),
               PANOPTES_CONFIG_HOST='127.0.0.1', PANOPTES_CONFIG_PORT=str(free_port()))
    env.pop('PANOPTES_CONFIG_FILE', None)
    return home, env


@pytest.mark.slow
@pytest.mark.parametrize('lines', list(readme_blocks()))
def test_readme_example_block_runs(lines, sandbox):
    for program in ('jq', 'solve-field', 'exiftool', 'ffmpeg'):
        require_program(program)
    home, env = sandbox
    script = as_script(lines).replace(DASK_PORT, str(free_port()))
    result = subprocess.run(['bash', '-c', script], cwd=home, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_quick_start_is_two_commands():
    text = (REPO_ROOT / 'README.md').read_text()
    quick = text.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    (block,) = re.findall(r'```sh\n(.*?)```', quick, re.S)
    assert [line.split('#')[0].strip() for line in block.strip().splitlines()] == \
           ['./install.sh run', './install.sh test']


def test_ci_runs_the_readme_test_command():
    assert (REPO_ROOT / '.ci' / 'run').read_text().rstrip().endswith('./install.sh test')
