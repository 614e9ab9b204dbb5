"""Timelapse movies: an H.264 MP4 of a directory's frames, made by ffmpeg."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from panoptes_cli.error import InvalidSystemCommand, NotFound, Timeout
from panoptes_cli.files import atomic_path
from panoptes_cli.programs import Process, failure_message, find_program

PathLike = str | os.PathLike


# PANOPTES observation frames (``20160909T081152.jpg``), not the pointing images.
DEFAULT_GLOB = '20[1-9][0-9]*T[0-9]*.jpg'


@dataclass
class TimelapseOptions:
    """How to make one timelapse (see :func:`make_timelapse` for each field)."""

    fn_out: PathLike | None = None
    glob_pattern: str = DEFAULT_GLOB
    overwrite: bool = False
    timeout: float = 60
    fps: float = 3
    progress: Callable[[int, int], None] | None = None


def timelapse_path(directory: PathLike) -> Path:
    """Return the default timelapse file for ``directory``.

    PANOPTES images live in ``.../<field>/<camera>/<sequence time>/``; there
    the movie is ``<field>_<camera>_<sequence time>.mp4`` inside that
    directory, as in the manual. Any other directory gets ``<name>.mp4`` inside it.

    >>> from panoptes_cli.images.timelapse import timelapse_path
    >>> str(timelapse_path('/images/fields/KIC8462852/ee04d1/20160909T081152/'))
    '/images/fields/KIC8462852/ee04d1/20160909T081152/KIC8462852_ee04d1_20160909T081152.mp4'
    >>> str(timelapse_path('night'))
    'night/night.mp4'
    """
    parts = Path(os.path.abspath(directory)).parts[1:]
    if len(parts) >= 3 and re.fullmatch(r'\d{8}T\d{6}', parts[-1]):
        name = '_'.join(parts[-3:])
    else:
        name = parts[-1] if parts else 'timelapse'
    return Path(directory) / f'{name}.mp4'


def make_timelapse(directory: PathLike, fn_out: PathLike | None = None,
                   glob_pattern: str = DEFAULT_GLOB, overwrite: bool = False,
                   timeout: float = 60, **kwargs) -> str:
    """Create a timelapse.

    A timelapse (H.264 MP4, made by ffmpeg) is created from the images in
    ``directory`` that match ``glob_pattern``, in name order (PANOPTES names are
    times, so that is time order). Frames are scaled to fit in 1920x1080,
    keeping their aspect ratio (the manual's version stretched them to
    1920x1080). The movie is written under a temporary name and renamed when
    complete, so a failed or interrupted run leaves nothing behind.

    >>> import subprocess
    >>> from panoptes_cli.images.timelapse import make_timelapse
    >>> frames = getfixture('tmp_path') / 'frames'
    >>> frames.mkdir()
    >>> for second in range(3):
    ...     _ = subprocess.run(['ffmpeg', '-loglevel', 'error', '-f', 'lavfi', '-i',
    ...                         'testsrc=size=160x120', '-frames:v', '1',
    ...                         str(frames / f'20160909T08115{second}.jpg')], check=True)
    >>> movie = make_timelapse(frames)
    >>> os.path.basename(movie), os.path.getsize(movie) > 0
    ('frames.mp4', True)
    >>> make_timelapse(frames)
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] File exists: '.../frames/frames.mp4'

    Args:
        directory (str): Where the pictures are.
        fn_out (str, optional): Full path to output file name; default
            :func:`timelapse_path` of the directory.
        glob_pattern (str, optional): Which files in ``directory`` become frames, default
            '20[1-9][0-9]*T[0-9]*.jpg': the pretty pictures of the observations (named
            by time), not the pointing images.
        overwrite (bool, optional): Replace an existing movie, default False.
        timeout (int): Seconds ffmpeg may take, default 60.
        **kwargs: ``fps`` (frames per second, default 3) and ``progress``, a callable
            given the number of frames encoded so far and the total, as ffmpeg's
            ``-progress`` output reports them.

    Returns:
        str: Name of output file.

    Raises:
        error.InvalidSystemCommand: ffmpeg is not found, or it failed.
        FileExistsError: ``fn_out`` already exists and ``overwrite=False``.
        FileNotFoundError: ``directory`` does not exist.
        error.NotFound: No file matches the pattern.
        error.Timeout: ffmpeg took longer than ``timeout``.
    """
    return timelapse_movie(directory, TimelapseOptions(
        fn_out=fn_out, glob_pattern=glob_pattern, overwrite=overwrite, timeout=timeout,
        fps=kwargs.get('fps', 3), progress=kwargs.get('progress')))


def timelapse_movie(directory: PathLike, options: TimelapseOptions) -> str:
    """Make the timelapse of a directory with typed options; see :func:`make_timelapse`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(2, 'No such directory', os.fspath(directory))
    fn_out = Path(options.fn_out) if options.fn_out is not None else timelapse_path(directory)
    if fn_out.exists() and not options.overwrite:
        raise FileExistsError(17, 'File exists', os.fspath(fn_out))
    ffmpeg = find_program('ffmpeg')
    frames = timelapse_frames(directory, options.glob_pattern)
    if not frames:
        raise NotFound(f'{directory}: no images match {options.glob_pattern!r}; pass --glob to '
                       'match others')

    fps = options.fps
    with contextlib.ExitStack() as stack:
        listing = stack.enter_context(tempfile.NamedTemporaryFile(
            'w', suffix='.txt', prefix='timelapse-', delete=False))
        stack.callback(os.unlink, listing.name)
        for frame in frames:
            listing.write(f"file '{_concat_quote(os.path.abspath(frame))}'\n")
            listing.write(f'duration {1 / fps:.6f}\n')
        listing.close()
        temp = stack.enter_context(atomic_path(fn_out, options.overwrite))
        command = [
            ffmpeg, '-nostdin', '-hide_banner', '-loglevel', 'error', '-y',
            '-f', 'concat', '-safe', '0', '-i', listing.name,
            '-vf', ('scale=w=min(1920\\,iw):h=min(1080\\,ih):force_original_aspect_ratio=decrease'
                    ':force_divisible_by=2'),
            '-r', str(fps), '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-movflags', '+faststart',
            '-progress', 'pipe:1', '-nostats', '-f', 'mp4', os.fspath(temp),
        ]
        _run_ffmpeg(command, options.timeout, options.progress, len(frames), fn_out)
    return str(fn_out)


def timelapse_frames(directory: PathLike, glob_pattern: str = DEFAULT_GLOB) -> list[str]:
    """Return the images of ``directory`` matching ``glob_pattern``, in name (time) order."""
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(directory)), glob_pattern)))


def _concat_quote(path: str) -> str:
    # The concat demuxer's quoting: close the quote, escape the quote, reopen.
    return path.replace("'", "'\\''")


def _run_ffmpeg(command: list, timeout: float, progress: Callable[[int, int], None] | None,
                total: int, fn_out: Path) -> None:
    """Run ffmpeg, report its ``-progress`` frame counts, enforce the timeout."""
    with tempfile.TemporaryFile() as errors:
        proc = Process(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        # A watchdog, because reading the progress pipe blocks.
        timed_out = threading.Event()

        def expire():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            for line in proc.stdout:
                key, _, value = line.strip().partition('=')
                if key == 'frame' and progress is not None and value.isdigit():
                    progress(min(int(value), total), total)
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            proc.stdout.close()
        if timed_out.is_set():
            raise Timeout(f'{fn_out}: ffmpeg took more than {timeout} s making the timelapse')
        if proc.returncode != 0:
            errors.seek(0)
            raise InvalidSystemCommand(
                f'{fn_out}: ffmpeg failed: {failure_message(errors.read(), proc.returncode)}')
