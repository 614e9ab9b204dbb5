"""The night's chain for one frame: CR2 -> FITS -> plate solve -> fpack -> pretty JPG -> record.

:func:`process_frame` takes one new frame (a Canon CR2 or a FITS file) through
the steps asked for, in this order:

- ``convert``: a CR2 becomes ``S.fits`` (raw Bayer pixels, EXIF keywords); a
  FITS frame needs no conversion.
- ``solve``: astrometry.net's solve-field; the WCS goes into the FITS header.
- ``pack``: ``S.fits.fz`` (Rice, lossless) by cfitsio's fpack, checked; the
  uncompressed ``S.fits`` is then removed.
- ``pretty``: ``S.jpg`` and ``latest.jpg`` (a hard link to the newest one, so a
  web page never follows a dangling link or sees half a picture).
- ``record``: one record per frame in a ``panoptes db`` collection, when asked.

Each frame is read once: a CR2 is decoded once (or a FITS read once) and the
array serves conversion and the picture (solve-field and fpack, external
programs, read the FITS just written, from the page cache). Every output is written
atomically (temporary name, then rename), so an output that exists is whole.

Nothing lives only in memory: whether a step is done is read from its output
(``S.fits`` or ``S.fits.fz`` for convert, a celestial WCS in the header for
solve, ``S.fits.fz`` for pack, ``S.jpg`` for pretty) and from the frame's
journal, the hidden ``.S.pipeline.json`` beside the outputs, which records each
step's result (and the record's id). A step that failed is journalled and not
tried again (delete the journal to retry); the other steps still run, unless
they need what it should have made. A restart, even after ``kill -9``, so
never redoes a finished step and never skips an unfinished one; a step whose
output was made just before a kill that left it out of the journal is
journalled then, without an event, and not redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from panoptes_cli.error import IllegalValue, PanError
from panoptes_cli.files import atomic_path, atomic_write

PathLike = str | os.PathLike

STEPS = ('convert', 'solve', 'pack', 'pretty')
RAW_SUFFIXES = ('.cr2',)
FITS_SUFFIXES = ('.fits', '.fit')
LATEST_NAME = 'latest.jpg'


@dataclass(frozen=True)
class PipelineOptions:
    """What to do with each frame.

    ``solve_options`` are :func:`panoptes_cli.images.solve.get_solve_field`'s
    keywords (``index_dir``, ``'--config'``, ``ra``/``dec``/``radius``...).
    ``record`` names a ``panoptes db`` collection (None: no records), stored
    with ``db_type``/``db_name``.
    """

    steps: tuple[str, ...] = STEPS
    output_dir: Path | None = None
    solve_timeout: float = 60.0
    solve_options: dict = field(default_factory=dict)
    latest: bool = True
    record: str | None = None
    db_type: str | None = None
    db_name: str | None = None
    decoder: str = 'auto'

    def __post_init__(self):
        unknown = [step for step in self.steps if step not in STEPS]
        if unknown or not self.steps:
            raise IllegalValue(f"steps {','.join(unknown) or '(none)'}: use some of "
                               f"{','.join(STEPS)}")
        # Always in the chain's order, whatever order they were given in.
        object.__setattr__(self, 'steps', tuple(step for step in STEPS if step in self.steps))


@dataclass(frozen=True)
class Frame:
    """One frame and where its outputs go."""

    source: Path
    output_dir: Path

    @property
    def stem(self) -> str:
        return self.source.stem

    @property
    def is_raw(self) -> bool:
        return self.source.suffix.lower() in RAW_SUFFIXES

    @property
    def fits(self) -> Path:
        return self.source if not self.is_raw else self.output_dir / f'{self.stem}.fits'

    @property
    def packed(self) -> Path:
        return self.output_dir / f'{self.stem}.fits.fz'

    @property
    def jpg(self) -> Path:
        return self.output_dir / f'{self.stem}.jpg'

    @property
    def journal(self) -> Path:
        return self.output_dir / f'.{self.stem}.pipeline.json'


def frame_for(path: PathLike, output_dir: PathLike | None = None) -> Frame | None:
    """Return the Frame for a new file, or None if it is not a frame to process.

    Frames are ``*.cr2`` and ``*.fits``/``*.fit`` files; hidden files (our
    temporary files), packed files and FITS made from a CR2 beside them are not.

    >>> frame_for('/night/20160909T081152.cr2').fits
    PosixPath('/night/20160909T081152.fits')
    >>> frame_for('/night/.x-20160909T081152.fits') is None, frame_for('/night/a.fits.fz') is None
    (True, True)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.startswith('.') or suffix not in RAW_SUFFIXES + FITS_SUFFIXES:
        return None
    out = Path(output_dir) if output_dir is not None else path.parent
    if suffix in FITS_SUFFIXES and any(
            (d / f'{path.stem}{s}').exists() for d in {path.parent, out}
            for s in ('.cr2', '.CR2')):
        return None  # our own conversion of that CR2
    return Frame(path, out)


def read_journal(frame: Frame) -> dict:
    """Return the frame's journal: step -> result (``output``/``seconds`` or ``error``)."""
    try:
        return json.loads(frame.journal.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A journal is only ever replaced whole; one that cannot be read is started again.
        return {}


def _has_wcs(path: Path) -> bool:
    from panoptes_cli.images.fits import getheader

    try:
        header = getheader(path)
    except (OSError, ValueError, PanError):
        return False
    return str(header.get('CTYPE1', '')).startswith('RA--')


def _fits_on_disk(frame: Frame) -> Path | None:
    for path in (frame.fits, frame.packed):
        if path.exists():
            return path
    return None


def step_state(frame: Frame, step: str, journal: dict) -> str:
    """Return 'done', 'failed' or 'todo' for one step, from the outputs and the journal."""
    entry = journal.get(step) or {}
    if 'error' in entry:
        return 'failed'
    if step == 'convert':
        done = not frame.is_raw or _fits_on_disk(frame) is not None
    elif step == 'solve':
        on_disk = _fits_on_disk(frame)
        done = 'output' in entry or (on_disk is not None and _has_wcs(on_disk))
    elif step == 'pack':
        done = frame.packed.exists()
    elif step == 'pretty':
        done = frame.jpg.exists()
    else:  # record
        done = 'output' in entry
    return 'done' if done else 'todo'


def _made_output(frame: Frame, step: str) -> Path | None:
    """The output a finished step left on disk (None for converting a FITS frame)."""
    if step == 'convert':
        return _fits_on_disk(frame) if frame.is_raw else None
    if step == 'solve':
        return _fits_on_disk(frame)
    return frame.packed if step == 'pack' else frame.jpg


def _steps_left(frame: Frame, options: PipelineOptions,
                journal: dict) -> list[tuple[str, Path | None]]:
    """The steps to run (with None), and those to journal only (with the output a kill
    left unjournalled: made, then killed before its journal entry)."""
    left = []
    for step in list(options.steps) + (['record'] if options.record else []):
        state = step_state(frame, step, journal)
        if state == 'todo':
            left.append((step, None))
        elif state == 'done' and step not in journal:
            output = _made_output(frame, step)
            if output is not None:
                left.append((step, output))
    return left


def pending_steps(frame: Frame, options: PipelineOptions) -> list[str]:
    """Return the steps (and 'record') still to do for this frame, or still to journal."""
    return [step for step, _ in _steps_left(frame, options, read_journal(frame))]


class _Work:
    """The frame's pixels and header, read at most once, and its journal."""

    def __init__(self, frame: Frame, options: PipelineOptions):
        self.frame = frame
        self.options = options
        self.data = None
        self.header = None
        self.journal = read_journal(frame)

    def load(self):
        """Read the pixels and header once: decode the CR2, else read the FITS on disk."""
        if self.data is not None:
            return
        if self.frame.is_raw and _fits_on_disk(self.frame) is None:
            import warnings

            from panoptes_cli.images.cr2 import exif_headers, read_cr2, start_read_exif

            exif = start_read_exif(self.frame.source, keep_exiftool=True)
            try:
                with warnings.catch_warnings():
                    # rawpy warns about OpenMP in forked workers (at the first decode); that
                    # risk (a deadlock) exists only if OpenMP ran in the parent before the fork,
                    # and the parent never decodes.
                    warnings.filterwarnings('ignore', 'rawpy is being used in a process created',
                                            RuntimeWarning)
                    self.data = read_cr2(self.frame.source, decoder=self.options.decoder)
            except BaseException:
                exif.cancel()
                raise
            self.header = exif_headers(exif.result())
            return
        from panoptes_cli.images.fits import getdata

        path = _fits_on_disk(self.frame)
        if path is None:
            raise PanError(f'{self.frame.source}: its FITS file is gone')
        self.data, self.header = getdata(path, header=True)

    def note(self, step: str, result: dict) -> None:
        self.journal[step] = result
        atomic_write(self.frame.journal, json.dumps(self.journal))


def _convert(work: _Work) -> str:
    from panoptes_cli.images.fits import write_fits

    work.load()
    write_fits(work.data, work.header, work.frame.fits, overwrite=True)
    return os.fspath(work.frame.fits)


def _solve(work: _Work) -> str:
    from panoptes_cli.images.fits import getheader
    from panoptes_cli.images.solve import get_solve_field

    path = _fits_on_disk(work.frame)
    if path is None:
        raise PanError(f'{work.frame.source}: no FITS file to solve')
    info = get_solve_field(path, replace=True, overwrite=True, skip_solved=True,
                           timeout=work.options.solve_timeout, **work.options.solve_options)
    if work.data is not None:
        # The pixels are unchanged; only the header gained a WCS.
        work.header = getheader(path)
    return info['solved_fits_file']


def _pack(work: _Work) -> str:
    from panoptes_cli.images.packing import fpack

    # cfitsio's fpack reads the FITS just written (from the page cache) and compresses
    # it faster than astropy compresses the array in memory, and writes the layout
    # funpack restores exactly; fpack() checks the result before removing the FITS.
    if not work.frame.fits.exists():
        raise PanError(f'{work.frame.source}: no FITS file to pack')
    return fpack(work.frame.fits, overwrite=True)


def _pretty(work: _Work) -> str:
    from panoptes_cli.images.pretty import _colour_picture, _date_from_name, _grey_picture, _save_jpg, _title

    work.load()
    header, data = work.header, work.data
    is_bayer = str(header.get('FILTER', '')).upper() == 'RGGB' or 'BAYERPAT' in header
    picture = _colour_picture(data) if is_bayer and data.ndim == 2 else _grey_picture(data)
    title = _title(header.get('FIELD') or work.frame.source.name, header.get('EXPTIME'),
                   header.get('FILTER'), header.get('DATE-OBS') or _date_from_name(work.frame.source))
    jpg = work.frame.jpg
    with atomic_path(jpg) as temp:
        _save_jpg(picture, title, temp)
    if work.options.latest:
        _link_latest(jpg, jpg.parent / LATEST_NAME)
    return os.fspath(jpg)


def _link_latest(jpg: Path, latest: Path) -> None:
    """Make ``latest`` the same file as ``jpg`` in one rename (a copy where links are refused)."""
    import shutil

    with atomic_path(latest) as temp:
        try:
            os.link(jpg, temp)
        except OSError:
            shutil.copyfile(jpg, temp)


def _record(work: _Work) -> str:
    from panoptes_cli.database import PanDB

    frame, options = work.frame, work.options
    record_id = f'{frame.output_dir.name}-{frame.stem}'
    db = PanDB(db_type=options.db_type or os.environ.get('PANOPTES_DB_TYPE') or 'file',
               db_name=options.db_name or os.environ.get('PANOPTES_DB_NAME'))
    if db.find(options.record, record_id) is None:
        data = {'filename': os.fspath(frame.source)}
        data.update({step: result for step, result in work.journal.items() if step != 'record'})
        header = work.header
        if header is None:
            on_disk = _fits_on_disk(frame)
            if on_disk is not None:
                from panoptes_cli.images.fits import getheader

                header = getheader(on_disk)
        for keyword in ('DATE-OBS', 'EXPTIME', 'IMAGEID', 'FIELD', 'CRVAL1', 'CRVAL2'):
            if header is not None and keyword in header:
                data[keyword.lower().replace('-', '_')] = header[keyword]
        from panoptes_cli.time import utc_now

        # A record with our id: a rerun after a kill between storing and journalling finds it.
        db.insert(options.record, {'_id': record_id, 'type': options.record,
                                   'date': utc_now().isoformat(timespec='milliseconds'),
                                   'data': data})
    return record_id


_RUNNERS = {'convert': _convert, 'solve': _solve, 'pack': _pack, 'pretty': _pretty,
            'record': _record}
# What each step needs done first (a failed convert leaves nothing to solve, pack or show).
_NEEDS = {'solve': 'convert', 'pack': 'convert', 'pretty': 'convert'}


def reuse_freed_memory() -> None:
    """Make this process keep the memory of one frame's arrays for the next (glibc malloc).

    A full frame's arrays (tens of MB each) are otherwise mapped afresh and
    handed back to the system every time, and every page of them faults in
    again: about 0.1 s of CPU a frame. Taken from the heap and left there when
    freed, the same memory serves frame after frame; the process keeps its
    peak size meanwhile. For processes that do nothing but frames (the
    watch's); without glibc nothing changes.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)  # big arrays from the heap, not mapped one by one
    mallopt(m_trim_threshold, (1 << 31) - 1)  # and the heap not shrunk when they are freed


def process_frame(frame: Frame, options: PipelineOptions, emit=None) -> list[dict]:
    """Run the frame's unfinished steps; return one event per step run.

    An event is ``{"filename", "step", "output", "seconds"}``, or with ``error``
    instead of ``output`` when the step failed; ``emit`` (if given) is called
    with each event as soon as its step is journalled.
    """
    with _frame_lock(frame) as present:
        return _run_steps(frame, options, emit) if present else []


@contextlib.contextmanager
def _frame_lock(frame: Frame):
    """Hold an exclusive lock on the frame's source file: one process at a time per frame.

    Two watches over one directory (an overlapping cron run, or the workers
    of a killed watch finishing their frame) then take turns, and the second
    finds the steps done. Yields False if the source has gone meanwhile.
    """
    import fcntl

    try:
        descriptor = os.open(frame.source, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(descriptor)


def _run_steps(frame: Frame, options: PipelineOptions, emit) -> list[dict]:
    work = _Work(frame, options)
    events = []
    for step, finished in _steps_left(frame, options, work.journal):
        if finished is not None:
            # Its output was made before a kill that came before its journal entry.
            work.note(step, {'output': os.fspath(finished)})
            continue
        started = time.perf_counter()
        event = {'filename': os.fspath(frame.source), 'step': step}
        needed = _NEEDS.get(step)
        try:
            if needed and step_state(frame, needed, work.journal) == 'failed':
                raise PanError(f'{frame.source}: not done because {needed} failed')
            output = _RUNNERS[step](work)
            event.update(output=output, seconds=round(time.perf_counter() - started, 3))
            work.note(step, {'output': output, 'seconds': event['seconds']})
        except (PanError, OSError, ValueError, MemoryError) as exc:
            event.update(error=_describe(exc), seconds=round(time.perf_counter() - started, 3))
            work.note(step, {'error': event['error']})
        events.append(event)
        if emit is not None:
            emit(event)
    return events


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PanError) and exc.msg:
        return str(exc.msg)
    if isinstance(exc, OSError) and exc.strerror:
        return f'{exc.filename}: {exc.strerror}' if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
