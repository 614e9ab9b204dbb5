"""Canon CR2 raw frames: decode the Bayer pixels, read EXIF, convert to PGM and FITS.

Pixels are decoded in process by LibRaw (through rawpy), which gives exactly
what ``dcraw -t 0 -D -4`` gives (the raw, unscaled, unrotated Bayer values of
the visible area) and is faster; ``dcraw`` is the fallback when rawpy is not
installed or LibRaw cannot read a file. EXIF comes from ``exiftool``.

Orientation: both decoders hand over the picture top row first; every frame read
here is turned bottom row first, the FITS convention and what panoptes-utils 0.2.29's
``read_pgm`` did, in one place (:func:`bottom_row_first`). So row 0 of a frame
holds ``G2 B`` and row 1 ``R G1``, as in :mod:`panoptes_cli.images.bayer`, and a
picture drawn with row 0 at the bottom shows the sky the way the camera took it.

The doctests use the sample files in the ``shared`` folder beside the repository:

>>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
>>> data = read_cr2(SHARED / 'synthetic.cr2')
>>> data.shape, data.dtype
((348, 520), dtype('uint16'))
>>> bool((data == np.flipud(np.load(SHARED / 'synthetic.npy'))).all())
True
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from panoptes_cli import programs
from panoptes_cli.error import (
    CheckFailed, IllegalValue, InvalidSystemCommand, MissingFile, Timeout, UndecodableRaw)
from panoptes_cli.files import atomic_path
from panoptes_cli.images.fits import observation_cards, write_fits
from panoptes_cli.logging import logger

PathLike = str | os.PathLike

# Raw Bayer values, no scaling or interpolation (-D), linear 16-bit (-4), no rotation (-t 0).
DCRAW_OPTIONS = ('-t', '0', '-D', '-4')

# FITS keyword, EXIF tag and comment for the camera details copied into FITS headers.
EXIF_KEYWORDS = (
    ('ISO', 'ISO', 'ISO speed'),
    ('CAMTEMP', 'CameraTemperature', 'Celsius - From CR2'),
    ('CIRCCONF', 'CircleOfConfusion', 'From CR2'),
    ('COLORTMP', 'ColorTempMeasured', 'From CR2'),
    ('FILENAME', 'FileName', 'From CR2'),
    ('INTSN', 'InternalSerialNumber', 'From CR2'),
    ('CAMSN', 'SerialNumber', 'From CR2'),
    ('MEASEV', 'MeasuredEV', 'From CR2'),
    ('MEASEV2', 'MeasuredEV2', 'From CR2'),
    ('MEASRGGB', 'MeasuredRGGB', 'From CR2'),
    ('WHTLVLN', 'NormalWhiteLevel', 'From CR2'),
    ('WHTLVLS', 'SpecularWhiteLevel', 'From CR2'),
    ('REDBAL', 'RedBalance', 'From CR2'),
    ('BLUEBAL', 'BlueBalance', 'From CR2'),
    # The manual's version asked for 'WB RGGBLevelAsShot', which exiftool never
    # reports, so WBRGGB was always empty.
    ('WBRGGB', 'WB_RGGBLevelsAsShot', 'From CR2'),
)


class MissingRawFile(MissingFile, InvalidSystemCommand):
    """A raw file that is not there (0.2.29's dcraw call failed with InvalidSystemCommand)."""


def existing_file(fname: PathLike) -> Path:
    """Return ``fname`` as a Path; raise MissingRawFile (a FileNotFoundError) unless it is a file."""
    path = Path(fname)
    if not path.is_file():
        raise MissingRawFile(f'{os.fspath(path)}: No such file')
    return path


def bottom_row_first(raster: np.ndarray) -> np.ndarray:
    """Turn a decoder's raster (top row first) into FITS order (bottom row first).

    >>> bottom_row_first(np.array([[1, 2], [3, 4]]))
    array([[3, 4],
           [1, 2]])
    """
    return np.ascontiguousarray(raster[::-1])


def read_cr2(cr2_fname: PathLike, decoder: str = 'auto', dcraw: str = 'dcraw',
             timeout: float | None = None) -> np.ndarray:
    """Return the raw Bayer pixels of a CR2 file, bottom row first (FITS order).

    The values are exactly those of ``dcraw -t 0 -D -4``, whose rows run top first;
    see the module's note on orientation.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
    >>> a = read_cr2(SHARED / 'synthetic.cr2', decoder='rawpy')
    >>> b = read_cr2(SHARED / 'synthetic.cr2', decoder='dcraw')
    >>> bool((a == b).all())
    True
    >>> read_cr2(SHARED / 'canon-eos350d-metadata-only.cr2')
    Traceback (most recent call last):
    ...
    panoptes_cli.error.UndecodableRaw: UndecodableRaw: .../canon-eos350d-metadata-only.cr2: cannot decode: LibRaw: Unsupported file format or not RAW file; dcraw: Cannot decode file ...

    Args:
        cr2_fname: The CR2 file.
        decoder: 'auto' (default: LibRaw through rawpy, dcraw when that fails), 'rawpy' or
            'dcraw'.
        dcraw: The dcraw program to run.
        timeout: Seconds dcraw may take, default no limit.

    Returns:
        numpy.ndarray: The ``height x width`` uint16 Bayer frame, row 0 the bottom.

    Raises:
        FileNotFoundError: No such file.
        UndecodableRaw: The file is not a raw image the decoders can read.
        InvalidSystemCommand: ``decoder='dcraw'`` and dcraw is not installed.
        IllegalValue: An unknown decoder.
    """
    return bottom_row_first(_decode(existing_file(cr2_fname), decoder, dcraw, timeout))


def _decode(path: Path, decoder: str, dcraw: str, timeout: float | None) -> np.ndarray:
    """The raster of one of the decoders, top row first."""
    name = os.fspath(path)
    if decoder not in ('auto', 'rawpy', 'dcraw'):
        raise IllegalValue(f"Unknown CR2 decoder {decoder!r}; use 'auto', 'rawpy' or 'dcraw'")
    reasons = []
    if decoder in ('auto', 'rawpy'):
        try:
            return _decode_with_rawpy(path)
        except ImportError:
            if decoder == 'rawpy':
                raise InvalidSystemCommand('rawpy is not installed; install it with: '
                                           'pip install rawpy') from None
            reasons.append('rawpy is not installed')
        except UndecodableRaw as exc:
            if decoder == 'rawpy':
                raise
            reasons.append(f'LibRaw: {exc.msg}')
        if decoder == 'auto' and not _has_program(dcraw):
            raise UndecodableRaw(f'{name}: cannot decode: {"; ".join(reasons)}; dcraw, the '
                                 'fallback, is not installed: sudo apt-get install '
                                 f'{programs.debian_package(dcraw)}')
    try:
        return _decode_with_dcraw(path, dcraw, timeout)
    except UndecodableRaw as exc:
        reasons.append(f'dcraw: {exc.msg}')
        raise UndecodableRaw(f'{name}: cannot decode: {"; ".join(reasons)}') from None


def _has_program(name: str) -> bool:
    return shutil.which(name) is not None


# LibRaw prints its read errors on file descriptor 2, which a process's threads share.
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _stderr_collected():
    """Collect what C code writes on file descriptor 2 meanwhile; yields a list that gets it.

    One capture at a time per process (decoding threads take turns): the
    descriptor is the process's.
    """
    import sys
    import tempfile

    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        printed: list[str] = []
        try:
            yield printed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed.append(capture.read().decode(errors='replace'))


def _decode_with_rawpy(path: Path) -> np.ndarray:
    import rawpy

    logger.debug(f'Decoding {path} with LibRaw (rawpy)')
    failure = None
    with _stderr_collected() as printed:
        try:
            with rawpy.imread(os.fspath(path)) as raw:
                # The one copy out of LibRaw's buffer (freed on close) is made bottom row first;
                # the top-first view of it handed on, bottom_row_first turns back without a copy.
                data = np.ascontiguousarray(raw.raw_image_visible[::-1])[::-1]
        except rawpy.LibRawError as exc:
            failure = exc
    text = printed[0].strip()
    if failure is None:
        if text:
            os.write(2, printed[0].encode())  # warnings about a frame that decoded: as printed
        return data
    reason = failure.args[0] if failure.args else type(failure).__name__
    if isinstance(reason, bytes):
        reason = reason.decode(errors='replace')
    # What LibRaw printed (``PATH: Unexpected end of file``) says why: in the error, not loose.
    detail = text.splitlines()[-1].removeprefix(f'{os.fspath(path)}: ') if text else ''
    raise UndecodableRaw(f'{reason} ({detail})' if detail else str(reason)) from None


def _decode_with_dcraw(path: Path, dcraw: str, timeout: float | None) -> np.ndarray:
    command = [programs.find_program(dcraw), *DCRAW_OPTIONS, '-c', os.fspath(path)]
    try:
        done = programs.run(command, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Timeout(f'{path}: decoding with dcraw took more than {timeout} s') from None
    if done.returncode != 0 or not done.stdout:
        raise UndecodableRaw(programs.failure_message(done.stderr, done.returncode))
    return _parse_pgm(done.stdout, os.fspath(path))


def cr2_to_pgm(cr2_fname: PathLike, pgm_fname: PathLike | None = None, overwrite: bool = True,
               *args, dcraw: str = 'dcraw', timeout: float | None = None, **kwargs) -> str:
    """Convert CR2 file to PGM.

    Converts a raw Canon CR2 file to a netpbm PGM file with ``dcraw -t 0 -D -4``
    (a blocking call). The PGM is written under a temporary name and renamed
    when complete, so a failure leaves no empty or partial PGM behind.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
    >>> pgm = cr2_to_pgm(SHARED / 'synthetic.cr2', getfixture('tmp_path') / 'synthetic.pgm')
    >>> read_pgm(pgm).shape
    (348, 520)

    Args:
        cr2_fname (str): Name of CR2 file to convert.
        pgm_fname (str, optional): Name of PGM file to output; default the CR2's name with
            a ``.pgm`` extension.
        overwrite (bool, optional): If an existing PGM should be overwritten, default True.
        dcraw (str, optional): The dcraw program to run, default 'dcraw'.
        timeout (float, optional): Seconds dcraw may take, default no limit.

    Returns:
        str: Filename of PGM that was created.

    Raises:
        FileExistsError: The PGM exists and ``overwrite=False`` (the manual's version
            returned the old file, which hides that nothing was converted).
        InvalidSystemCommand: dcraw is not installed.
        UndecodableRaw: dcraw cannot decode the file.
    """
    path = existing_file(cr2_fname)
    name = os.fspath(cr2_fname)
    target = Path(pgm_fname) if pgm_fname is not None else path.with_suffix('.pgm')
    program = programs.find_program(dcraw)
    with atomic_path(target, overwrite) as temp:
        with open(temp, 'wb') as stream:
            try:
                done = programs.run([program, *DCRAW_OPTIONS, '-c', os.fspath(path)],
                                    stdout=stream, stderr=subprocess.PIPE, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise Timeout(f'{name}: converting with dcraw took more than {timeout} s') from None
        if done.returncode != 0 or temp.stat().st_size == 0:
            raise UndecodableRaw(f'{name}: cannot decode: dcraw: '
                                 f'{programs.failure_message(done.stderr, done.returncode)}')
    return str(target)


def read_pgm(fname: PathLike, byteorder: str = '>', remove_after: bool = False) -> np.ndarray:
    """Return image data from a raw PGM file as numpy array, bottom row first.

    PGM rows run top first; the array is turned the FITS way up (see the module's
    note on orientation), as panoptes-utils 0.2.29 did. The header is parsed as the format spec (http://netpbm.sourceforge.net/doc/pgm.html)
    says: magic number, then width, height and maximum value separated by any
    whitespace, with ``#`` comments allowed, then one whitespace character and
    the raster. Two-byte samples are big endian (as dcraw writes them, even
    though the CR2 itself is little endian); plain (``P2``) PGMs are read too.

    >>> pgm = getfixture('tmp_path') / 'tiny.pgm'
    >>> _ = pgm.write_bytes(b'P5\\n# made by hand\\n3 2\\n65535\\n' +
    ...                     np.arange(6, dtype='>u2').tobytes())
    >>> read_pgm(pgm)
    array([[3, 4, 5],
           [0, 1, 2]], dtype=uint16)
    >>> _ = pgm.write_bytes(b'P2 2 2 255 1 2 3 4')
    >>> read_pgm(pgm, remove_after=True)
    array([[3, 4],
           [1, 2]], dtype=uint8)
    >>> pgm.exists()
    False

    Args:
        fname (str): Filename of PGM to be converted.
        byteorder (str): Byte order of two-byte samples, default '>' (big endian).
        remove_after (bool): Delete fname file after reading, defaults to False.

    Returns:
        numpy.ndarray: The raw data from the PGM, in native byte order.

    Raises:
        CheckFailed: Not a PGM file, or a truncated one (an IllegalValue, and an
            AssertionError as 0.2.29's check was).
    """
    buffer = Path(fname).read_bytes()
    data = bottom_row_first(_parse_pgm(buffer, os.fspath(fname), byteorder=byteorder))
    if remove_after:
        os.unlink(fname)
    return data


def _parse_pgm(buffer: bytes, name: str, byteorder: str = '>') -> np.ndarray:
    fields = []
    position = 0
    while len(fields) < 4:
        while position < len(buffer) and buffer[position:position + 1].isspace():
            position += 1
        if buffer[position:position + 1] == b'#':
            end = buffer.find(b'\n', position)
            position = len(buffer) if end < 0 else end + 1
            continue
        start = position
        while position < len(buffer) and not buffer[position:position + 1].isspace():
            position += 1
        if start == position:
            raise CheckFailed(f'{name}: not a PGM file (truncated header)')
        fields.append(buffer[start:position])
    magic = fields[0]
    if magic not in (b'P5', b'P2'):
        raise CheckFailed(f'{name}: not a PGM file (magic number {magic[:8]!r})')
    try:
        width, height, maxval = (int(field) for field in fields[1:])
    except ValueError:
        raise CheckFailed(f'{name}: not a PGM file (bad header {fields[1:]!r})') from None
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise CheckFailed(f'{name}: not a PGM file (size {width}x{height}, maxval {maxval})')
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(np.uint16).newbyteorder(byteorder)
    if magic == b'P2':
        values = np.array(buffer[position:].split()[:width * height], dtype=np.int64)
        if values.size < width * height:
            raise CheckFailed(f'{name}: truncated PGM ({values.size} of {width * height} values)')
        return values.astype(dtype.newbyteorder('=')).reshape(height, width)
    # Exactly one whitespace character separates the header from the raster.
    raster_start = position + 1
    count = width * height
    if len(buffer) - raster_start < count * dtype.itemsize:
        raise CheckFailed(f'{name}: truncated PGM ({len(buffer) - raster_start} of '
                           f'{count * dtype.itemsize} bytes)')
    data = np.frombuffer(buffer, dtype=dtype, count=count, offset=raster_start)
    return data.reshape(height, width).astype(dtype.newbyteorder('='))


def _exiftool_name(fname: Path) -> str:
    """The file's name as exiftool must be given it: not mistaken for an option."""
    name = os.fspath(fname)
    return f'./{name}' if name.startswith('-') else name


def _parse_exif(fname: Path, out: bytes, err: bytes, status: int | None) -> dict:
    """The EXIF dict from what ``exiftool -j FILE`` wrote, or the error it reported."""
    try:
        records = json.loads(out.decode('utf-8', errors='replace'))
    except json.JSONDecodeError:
        raise InvalidSystemCommand(f'{fname}: reading EXIF: exiftool failed: '
                                   f'{programs.failure_message(err, status)}') from None
    exif = records[0] if records else {}
    if 'Error' in exif:
        raise CheckFailed(f"{fname}: cannot read EXIF: {exif['Error']}")
    if exif.get('SourceFile') == _exiftool_name(fname):
        exif['SourceFile'] = os.fspath(fname)
    return exif


class _ExifReader:
    """An exiftool run started in the background; :meth:`result` waits for its EXIF."""

    def __init__(self, fname: Path, exiftool: str):
        self.fname = fname
        self.proc = programs.Process([programs.find_program(exiftool), '-j',
                                      _exiftool_name(fname)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self, timeout: float | None = 60) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise Timeout(f'{self.fname}: reading EXIF: exiftool took more than {timeout} s')
        return _parse_exif(self.fname, out, err, self.proc.returncode)

    def cancel(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.communicate()


class _KeptExifReader:
    """A request to this thread's long-running exiftool; :meth:`result` waits for its answer."""

    def __init__(self, fname: Path, exiftool: str):
        from panoptes_cli.images.exiftool import kept_exiftool

        self.fname = fname
        self.tool = kept_exiftool(exiftool)
        self.arguments = ['-j', _exiftool_name(fname)]
        self.number = self.tool.send(self.arguments)

    def result(self, timeout: float | None = 60) -> dict:
        try:
            if self.tool.waiting != self.number:
                # Another read in this thread was sent since, and this answer dropped.
                self.number = self.tool.send(self.arguments)
            out, err, status = self.tool.receive(timeout)
        except Timeout:
            why = f'{self.fname}: reading EXIF: exiftool took more than {timeout} s'
            raise Timeout(why) from None
        except OSError as exc:
            raise InvalidSystemCommand(f'{self.fname}: reading EXIF: {exc}') from None
        return _parse_exif(self.fname, out, err, status)

    def cancel(self) -> None:
        """Nothing to stop: the next request collects (and drops) this answer first."""


def start_read_exif(fname: PathLike, exiftool: str = 'exiftool',
                    keep_exiftool: bool = False) -> _ExifReader | _KeptExifReader:
    """Start reading EXIF in the background (exiftool takes a while to start).

    Returns an object whose ``result()`` gives :func:`read_exif`'s dict. With
    ``keep_exiftool`` the calling thread's long-running exiftool answers (see
    :mod:`panoptes_cli.images.exiftool`): for a process that reads many files.
    """
    path = existing_file(fname)
    if keep_exiftool:
        return _KeptExifReader(path, exiftool)
    return _ExifReader(path, exiftool)


def read_exif(fname: PathLike, exiftool: str = 'exiftool') -> dict:
    """Read the EXIF information.

    Gets the EXIF information using ``exiftool -j``.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
    >>> exif = read_exif(SHARED / 'synthetic.cr2')
    >>> exif['ExposureTime'], exif['ISO'], exif['DateTimeOriginal'], exif['SerialNumber']
    (120, 100, '2016:09:09 08:11:52', 12345678)

    Args:
        fname (str): Name of file.
        exiftool (str): The exiftool program, default 'exiftool' (found on the PATH).

    Returns:
        dict: Dictionary of EXIF information, as exiftool names and formats it.

    Raises:
        FileNotFoundError: No such file.
        InvalidSystemCommand: exiftool is not installed, or failed.
        IllegalValue: exiftool cannot read the file.
    """
    return start_read_exif(fname, exiftool).result()


def exif_date(exif: dict) -> str | None:
    """Return DateTimeOriginal as ISO ``YYYY-MM-DDTHH:MM:SS``, or None.

    >>> exif_date({'DateTimeOriginal': '2016:09:09 08:11:52'})
    '2016-09-09T08:11:52'
    >>> exif_date({'DateTimeOriginal': 'garbage'}) is None
    True
    """
    value = str(exif.get('DateTimeOriginal', '')).strip()
    try:
        return datetime.strptime(value[:19], '%Y:%m:%d %H:%M:%S').isoformat()
    except ValueError:
        return None


def exif_exposure_time(exif: dict) -> float | None:
    """Return ExposureTime in seconds (exiftool writes short ones as ``1/15``), or None.

    >>> exif_exposure_time({'ExposureTime': '1/15'})
    0.06666666666666667
    >>> exif_exposure_time({'ExposureTime': 120})
    120.0
    """
    value = exif.get('ExposureTime')
    try:
        return float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        return None


def exif_headers(exif: dict) -> dict:
    """Return the FITS header keywords :func:`cr2_to_fits` writes from a CR2's EXIF.

    FILTER is RGGB (the Bayer pattern), EXPTIME is in seconds, DATE-OBS is
    DateTimeOriginal in ISO form; tags the camera did not record are left out
    (the manual's version wrote empty strings).

    >>> headers = exif_headers({'ExposureTime': '1/15', 'ISO': 400, 'SerialNumber': 12,
    ...                         'DateTimeOriginal': '2005:08:03 18:59:18'})
    >>> headers['EXPTIME'], headers['ISO'], headers['CAMSN'], headers['DATE-OBS']
    ((0.06666666666666667, 'Seconds'), (400, 'ISO speed'), ('12', 'From CR2'), '2005-08-03T18:59:18')
    >>> headers['FILTER']
    'RGGB'
    """
    headers = {'FILTER': 'RGGB'}
    exptime = exif_exposure_time(exif)
    if exptime is not None:
        headers['EXPTIME'] = (exptime, 'Seconds')
    for keyword, tag, comment in EXIF_KEYWORDS:
        value = exif.get(tag)
        if value is None or value == '':
            continue
        if keyword in ('CAMSN', 'INTSN'):
            value = str(value)
        headers[keyword] = (value, comment)
    date = exif_date(exif)
    if date is not None:
        headers['DATE-OBS'] = date
    return headers


def cr2_fits_path(cr2_fname: PathLike, output_dir: PathLike | None = None,
                  suffix: str = '.fits') -> Path:
    """Return ``x.fits`` (or another suffix) for ``x.cr2``, beside it unless ``output_dir``.

    >>> str(cr2_fits_path('/data/night.cr2/IMG_0001.CR2'))
    '/data/night.cr2/IMG_0001.fits'
    """
    path = Path(cr2_fname)
    return Path(output_dir if output_dir is not None else path.parent) / (path.stem + suffix)


def cr2_to_fits(cr2_fname: PathLike, fits_fname: PathLike | None = None, overwrite: bool = False,
                headers: dict | None = None, fits_headers: dict | None = None,
                remove_cr2: bool = False, **kwargs) -> str:
    """Convert a CR2 file to FITS.

    Decodes the raw Bayer pixels (see :func:`read_cr2`; no intermediate PGM
    file is needed) and writes them with the header keywords of
    :func:`exif_headers`, then ``fits_headers`` as given (keys upper-cased),
    then the observation ``headers``. The FITS is written under a temporary
    name and renamed when complete; the CR2 is removed only after that.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
    >>> from panoptes_cli.images.fits import getheader
    >>> fits_fn = cr2_to_fits(SHARED / 'synthetic.cr2', getfixture('tmp_path') / 's.fits',
    ...                       fits_headers={'observer': 'PAN001'})
    >>> header = getheader(fits_fn)
    >>> header['EXPTIME'], header['ISO'], header['DATE-OBS'], header['FILTER'], header['CAMSN']
    (120.0, 100, '2016-09-09T08:11:52', 'RGGB', '12345678')
    >>> header['OBSERVER']
    'PAN001'

    Args:
        cr2_fname (str): Name of the CR2 file to be converted.
        fits_fname (str, optional): Where to write the FITS; by default the CR2's name
            with a ``.fits`` suffix (the manual's version replaced '.cr2' anywhere in
            the path and missed '.CR2').
        overwrite (bool, optional): Replace an existing FITS, default False.
        headers (dict, optional): Observation information added to the FITS header as
            ``panoptes_cli.images.fits.update_observation_headers`` adds it.
        fits_headers (dict, optional): Cards written to the FITS header as they are.
        remove_cr2 (bool, optional): Delete the CR2 once the FITS is complete, default False.
        **kwargs: ``decoder``, ``dcraw`` and ``timeout`` for :func:`read_cr2`; ``exiftool``;
            ``keep_exiftool`` (read the EXIF with this thread's long-running exiftool, as
            a batch does: see :func:`start_read_exif`).

    Returns:
        str: the FITS file's path.

    Raises:
        FileExistsError: The FITS exists and ``overwrite=False`` (the manual's version
            silently returned the old file).
        UndecodableRaw: The CR2 cannot be decoded.
        InvalidSystemCommand: exiftool (or a needed dcraw) is not installed.
    """
    path = existing_file(cr2_fname)
    target = Path(fits_fname) if fits_fname is not None else cr2_fits_path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(17, 'File exists', os.fspath(target))

    # exiftool (a Perl start-up) runs while the pixels decode.
    exif_reader = start_read_exif(path, kwargs.get('exiftool', 'exiftool'),
                                  keep_exiftool=kwargs.get('keep_exiftool', False))
    try:
        data = read_cr2(path, decoder=kwargs.get('decoder', 'auto'),
                        dcraw=kwargs.get('dcraw', 'dcraw'), timeout=kwargs.get('timeout'))
    except BaseException:
        exif_reader.cancel()
        raise
    header = exif_headers(exif_reader.result())
    for key, value in (fits_headers or {}).items():
        header[str(key).upper()] = value
    if headers:
        # The cards update_observation_headers would write, put in before the one (atomic)
        # write instead of reading and rewriting the whole image afterwards.
        for keyword, value, comment in observation_cards(headers):
            old = header.get(keyword)
            if comment is None and isinstance(old, tuple):
                # As in an astropy header, a new value keeps the card's comment.
                header[keyword] = (value, *old[1:])
            else:
                header[keyword] = value if comment is None else (value, comment)

    write_fits(data, header, target, overwrite=overwrite)
    logger.debug(f'Converted {path} to {target}')
    if remove_cr2:
        path.unlink()
    return str(target)


def read_exif_batch(fnames: list[PathLike], exiftool: str = 'exiftool', chunk_size: int = 200):
    """Read the EXIF of many files with one exiftool run per ``chunk_size`` files.

    exiftool takes a while to start, so this is much faster than calling
    :func:`read_exif` for each file. Yields ``(fname, exif)`` in the order given,
    where ``exif`` is the dict :func:`read_exif` returns, or the exception that
    reading that file raised.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
    >>> for name, exif in read_exif_batch([SHARED / 'synthetic.cr2', SHARED / 'nothing.cr2']):
    ...     print(os.path.basename(name), exif['ISO'] if isinstance(exif, dict) else repr(exif))
    synthetic.cr2 100
    nothing.cr2 FileNotFoundError(2, 'No such file')
    """
    program = programs.find_program(exiftool)
    names = [os.fspath(fname) for fname in fnames]
    for start in range(0, len(names), chunk_size):
        chunk = names[start:start + chunk_size]
        existing = [name for name in chunk if os.path.isfile(name)]
        found = {}
        if existing:
            # '-charset filename=utf8' and '--' keep odd names (and names starting
            # with '-') intact; SourceFile echoes each name as given.
            done = programs.run([program, '-j', '-charset', 'filename=utf8', '--', *existing],
                                capture_output=True)
            try:
                records = json.loads(done.stdout.decode('utf-8', errors='replace') or '[]')
            except json.JSONDecodeError:
                records = []
            found = {record.get('SourceFile'): record for record in records}
            failure = (programs.failure_message(done.stderr, done.returncode)
                       if done.stderr.strip() else 'no EXIF')
        for name in chunk:
            if not os.path.isfile(name):
                yield name, FileNotFoundError(2, 'No such file', name)
            elif name not in found:
                yield name, IllegalValue(f'{name}: cannot read EXIF: exiftool: {failure}')
            elif 'Error' in found[name]:
                yield name, IllegalValue(f"{name}: cannot read EXIF: {found[name]['Error']}")
            else:
                yield name, found[name]
