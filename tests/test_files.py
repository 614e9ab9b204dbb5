"""Atomic file writing (panoptes_cli.files): all or nothing, never clobbering by surprise."""

import errno
import gzip
import os
import stat

import pytest

from conftest import python_output
from panoptes_cli.files import atomic_path, atomic_write, fsync_directory


@pytest.fixture
def work(tmp_path):
    """An empty directory (conftest puts a PANDIR in tmp_path)."""
    directory = tmp_path / 'work'
    directory.mkdir()
    return directory


def hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith('.'))


@pytest.mark.parametrize('durable', [False, True])
def test_success_moves_the_file_into_place(work, durable):
    target = work / 'out.fits'
    with atomic_path(target, durable=durable) as temp:
        assert not temp.exists() and not target.exists()
        assert temp.parent == work and temp.name.startswith('.')
        temp.write_bytes(b'new')
    assert target.read_bytes() == b'new'
    assert hidden(work) == []


def test_overwrite_replaces_an_existing_file(work):
    target = work / 'out.txt'
    target.write_text('old')
    with atomic_path(target) as temp:
        temp.write_text('new')
    assert target.read_text() == 'new'


@pytest.mark.parametrize('error', [OSError('disk full'), KeyboardInterrupt()])
def test_failure_leaves_the_target_and_no_temporary_file(work, error):
    target = work / 'out.txt'
    target.write_text('old')
    with pytest.raises(type(error)), atomic_path(target) as temp:
        temp.write_text('half')
        raise error
    assert target.read_text() == 'old'
    assert sorted(p.name for p in work.iterdir()) == ['out.txt']


def test_failure_before_anything_is_written(work):
    target = work / 'out.txt'
    with pytest.raises(ValueError), atomic_path(target):
        raise ValueError('bad data')
    assert list(work.iterdir()) == []


def test_a_block_that_writes_nothing_fails(work):
    with pytest.raises(FileNotFoundError), atomic_path(work / 'out.txt'):
        pass
    assert list(work.iterdir()) == []


def test_no_overwrite_refuses_an_existing_target_before_the_block(work):
    target = work / 'out.txt'
    target.write_text('old')
    ran = False
    with pytest.raises(FileExistsError) as info, atomic_path(target, overwrite=False):
        ran = True
    assert not ran
    assert info.value.errno == errno.EEXIST and info.value.filename == str(target)
    assert str(info.value) == f"[Errno 17] File exists: '{target}'"
    assert target.read_text() == 'old'


def test_no_overwrite_refuses_a_dangling_symlink(work):
    target = work / 'latest.jpg'
    target.symlink_to('gone.jpg')
    with pytest.raises(FileExistsError), atomic_path(target, overwrite=False) as temp:
        temp.write_text('new')
    assert os.readlink(target) == 'gone.jpg'


def test_no_overwrite_keeps_a_target_that_appears_meanwhile(work):
    target = work / 'out.txt'
    with pytest.raises(FileExistsError) as info, atomic_path(target, overwrite=False) as temp:
        temp.write_text('mine')
        target.write_text('theirs')  # another process got there first
    assert info.value.filename == str(target)
    assert target.read_text() == 'theirs'
    assert sorted(p.name for p in work.iterdir()) == ['out.txt']


def test_no_overwrite_creates_a_new_target(work):
    target = work / 'out.txt'
    with atomic_path(target, overwrite=False) as temp:
        temp.write_text('new')
    assert target.read_text() == 'new'
    assert target.stat().st_nlink == 1
    assert hidden(work) == []


class TestWithoutHardLinks:
    """Some network and FAT file systems refuse link(); moving in must still work."""

    @pytest.fixture(autouse=True)
    def no_links(self, monkeypatch):
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EPERM, 'Operation not permitted')
        monkeypatch.setattr(os, 'link', refuse)

    def test_new_target(self, work):
        target = work / 'out.txt'
        with atomic_path(target, overwrite=False) as temp:
            temp.write_text('new')
        assert target.read_text() == 'new'
        assert hidden(work) == []

    def test_target_that_appears_meanwhile(self, work):
        target = work / 'out.txt'
        with pytest.raises(FileExistsError), atomic_path(target, overwrite=False) as temp:
            temp.write_text('mine')
            target.write_text('theirs')
        assert target.read_text() == 'theirs'
        assert hidden(work) == []


def test_temporary_name_keeps_the_suffixes_for_format_guessing(work):
    """astropy gzips a ``.fits.gz`` name; it must do the same to the temporary file."""
    import numpy as np
    from astropy.io import fits

    target = work / 'image.fits.gz'
    with atomic_path(target) as temp:
        assert temp.name.endswith('-image.fits.gz')
        fits.writeto(temp, np.arange(4, dtype=np.int16))
    with gzip.open(target) as stream:
        assert stream.read(6) == b'SIMPLE'


def test_pil_infers_the_format_from_the_temporary_name(work):
    from PIL import Image

    target = work / 'pretty.png'
    with atomic_path(target) as temp:
        Image.new('L', (4, 3)).save(temp)
    with Image.open(target) as image:
        assert image.format == 'PNG'


def test_suffix_hides_the_format(work):
    target = work / 'image.fits.gz'
    with atomic_path(target, suffix='.part') as temp:
        assert temp.name.endswith('-image.fits.gz.part')
        temp.write_bytes(b'plain')
    assert target.read_bytes() == b'plain'


def test_replaces_a_symlink_with_a_symlink(work):
    link = work / 'latest.jpg'
    link.symlink_to('old.jpg')
    with atomic_path(link) as temp:
        os.symlink('new.jpg', temp)
    assert os.readlink(link) == 'new.jpg'
    assert hidden(work) == []


def test_temporary_names_differ(work):
    target = work / 'out.txt'
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text('1')
        second.write_text('2')
    assert target.read_text() == '1'


def test_atomic_write_new_file_gets_the_umask_mode(work):
    path = work / 'pocs_local.yaml'
    old = os.umask(0o027)
    try:
        atomic_write(path, 'name: PAN001\n')
    finally:
        os.umask(old)
    assert path.read_text() == 'name: PAN001\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_atomic_write_keeps_the_mode(work):
    path = work / 'pocs_local.yaml'
    path.write_text('old')
    path.chmod(0o604)
    atomic_write(path, 'température: 12 °C\n')
    assert path.read_text(encoding='utf-8') == 'température: 12 °C\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert hidden(work) == []


def test_atomic_write_failure_keeps_the_old_file(work):
    path = work / 'notes.txt'
    path.write_text('old')
    with pytest.raises(UnicodeEncodeError):
        atomic_write(path, 'température', encoding='ascii')
    assert path.read_text() == 'old'
    assert sorted(p.name for p in work.iterdir()) == ['notes.txt']


def test_atomic_write_without_overwrite(work):
    path = work / 'notes.txt'
    atomic_write(path, 'first', overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(path, 'second', overwrite=False)
    assert path.read_text() == 'first'


def test_fsync_directory(work):
    fsync_directory(work)
    with pytest.raises(FileNotFoundError):
        fsync_directory(work / 'missing')
    (work / 'file').write_text('x')
    with pytest.raises(NotADirectoryError):
        fsync_directory(work / 'file')


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any directory')
def test_fsync_directory_that_cannot_be_read(work):
    directory = work / 'drop'
    directory.mkdir(mode=0o300)
    try:
        fsync_directory(directory)
        with atomic_path(directory / 'out.txt', durable=True) as temp:
            temp.write_text('new')
        assert (directory / 'out.txt').read_text() == 'new'
    finally:
        directory.chmod(0o700)


def test_import_is_light():
    code = ('import sys; before = set(sys.modules); import panoptes_cli.files; '
            'print(sorted({m.split(".")[0] for m in set(sys.modules) - before} '
            '- set(sys.stdlib_module_names)))')
    assert python_output(code) == "['panoptes_cli']"
