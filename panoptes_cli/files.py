"""Write files all at once: a reader sees the old file or the new one, never half of one.

:func:`atomic_path` gives a temporary name beside the target (same directory,
so same file system) to write to, and renames it over the target only when
the writing succeeded; a failure, even Ctrl-C, leaves nothing behind.
:func:`atomic_write` puts text in a file that way, and :func:`fsync_directory`
makes a rename survive a power cut.

Only the standard library is used, so importing this module costs nothing.

>>> from panoptes_cli.files import atomic_path, atomic_write
>>> log = getfixture('tmp_path') / 'night.log'
>>> atomic_write(log, 'dome open\\n')
>>> with atomic_path(log) as temp:
...     _ = temp.write_text(log.read_text() + 'dome closed\\n')
>>> print(log.read_text(), end='')
dome open
dome closed
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

PathLike = str | os.PathLike


def _temp_name(target: Path, suffix: str) -> Path:
    """Return an unused hidden name beside ``target``: ``.<random>-<name><suffix>``."""
    return target.with_name(f'.{os.urandom(6).hex()}-{target.name}{suffix}')


def _file_exists(target: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, 'File exists', os.fspath(target))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A directory that cannot be opened for reading (write and search permission are enough to
# rename in it), or a file system that cannot sync directories: nothing more can be done.
_CANNOT_SYNC = {errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP,
                errno.EBADF}


def fsync_directory(path: PathLike) -> None:
    """Flush a directory's entries to disk, so that a rename or new file in it survives a crash.

    A directory that cannot be opened for reading, or a file system that
    cannot sync directories, is passed over quietly: there is nothing more to
    be done there.

    >>> fsync_directory(getfixture('tmp_path'))

    Args:
        path: The directory.

    Raises:
        OSError: The directory does not exist, or the disk reported an error.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError as exc:
        if exc.errno in _CANNOT_SYNC:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _CANNOT_SYNC:
            raise
    finally:
        os.close(fd)


def _move_into_place(temp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, target)
        return
    try:
        # link() fails if the target appeared meanwhile, where rename() would replace it.
        os.link(temp, target)
    except FileExistsError:
        raise _file_exists(target) from None
    except OSError:
        # No hard links on this file system (some network and FAT ones): check, then rename.
        if os.path.lexists(target):
            raise _file_exists(target) from None
        os.replace(temp, target)
    else:
        temp.unlink()


@contextlib.contextmanager
def atomic_path(target: PathLike, overwrite: bool = True, *, suffix: str = '',
                durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place when the block succeeds.

    The block creates the file (or symlink) at the temporary path, which is
    hidden (``.<random>-<name>``) and in the target's directory, so the final
    rename is atomic. If the block raises, the temporary file is removed and
    ``target`` is untouched. The temporary name ends like the target's, so
    tools that choose a format from the name (astropy, PIL, ffmpeg,
    ``.fz`` for compressed FITS) treat it as they would the target; give
    ``suffix='.part'`` for tools that must not (cfitsio gzips a ``.gz`` output).

    With ``overwrite=False`` an existing ``target`` raises FileExistsError
    before the block runs, and again at the end if one appeared meanwhile: the
    file is moved in through a hard link, which never replaces anything. On a
    file system without hard links, the check and the rename are two steps.

    >>> from pathlib import Path
    >>> target = getfixture('tmp_path') / 'weather.fits'
    >>> with atomic_path(target) as temp:
    ...     _ = temp.write_text('SIMPLE  = T')
    ...     temp.parent == target.parent, temp.name.endswith('-weather.fits'), target.exists()
    (True, True, False)
    >>> target.read_text()
    'SIMPLE  = T'
    >>> with atomic_path(target) as temp:
    ...     _ = temp.write_text('half a fi')
    ...     raise OSError('disk full')
    Traceback (most recent call last):
    ...
    OSError: disk full
    >>> target.read_text(), [p.name for p in target.parent.iterdir() if p.name.startswith('.')]
    ('SIMPLE  = T', [])
    >>> with atomic_path(target, overwrite=False) as temp:
    ...     _ = temp.write_text('clobbered')
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] File exists: '.../weather.fits'

    Args:
        target: The file to write.
        overwrite: Replace an existing ``target``; if False, raise FileExistsError.
        suffix: Text to append to the temporary name.
        durable: Flush the file to disk before the rename and the directory
            after it, so the new file survives a power cut.

    Yields:
        The temporary path, which does not exist yet.

    Raises:
        FileExistsError: ``target`` exists (or appeared) and ``overwrite`` is False.
        OSError: The temporary file could not be moved into place.
    """
    target = Path(target)
    if not overwrite and os.path.lexists(target):
        raise _file_exists(target)
    temp = _temp_name(target, suffix)
    try:
        yield temp
        if durable:
            _fsync_file(temp)
        _move_into_place(temp, target, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    if durable:
        fsync_directory(target.parent)


def atomic_write(path: PathLike, text: str, *, encoding: str = 'utf-8',
                 overwrite: bool = True) -> None:
    """Replace a file with ``text``, atomically and durably, keeping its permissions.

    The text is written to a temporary file beside ``path``, flushed to disk
    and renamed over ``path`` (see :func:`atomic_path` with ``durable=True``).
    An existing file's mode is kept; a new file gets the usual mode for new
    files (0o666 less the umask).

    >>> import os, stat
    >>> path = getfixture('tmp_path') / 'pocs_local.yaml'
    >>> atomic_write(path, 'name: PAN001\\n')
    >>> path.chmod(0o600)
    >>> atomic_write(path, 'name: PAN002\\n')
    >>> path.read_text(), oct(stat.S_IMODE(path.stat().st_mode))
    ('name: PAN002\\n', '0o600')

    Args:
        path: The file to write.
        text: Its new contents.
        encoding: The text encoding.
        overwrite: Replace an existing file; if False, raise FileExistsError.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: The file could not be written.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    with atomic_path(path, overwrite, durable=True) as temp:
        # O_EXCL: the name is ours alone.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, 'w', encoding=encoding) as stream:
            stream.write(text)
            if mode is not None:
                os.fchmod(stream.fileno(), mode)


__all__ = ['atomic_path', 'atomic_write', 'fsync_directory']
