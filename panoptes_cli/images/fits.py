"""Read, write, compress and plate-solve FITS images.

The readers (:func:`getdata`, :func:`getheader`, :func:`getval`,
:func:`getwcs`) find the image HDU on their own: an fpacked ``.fz`` file keeps
its image in extension 1 behind an empty primary HDU, a plain file in the
primary HDU. Every writer goes through a temporary file in the target's
directory and ``os.replace``, so a crash never leaves half a FITS file behind.

astropy and numpy are imported inside the functions that use them, so that
importing this module (and the ``panoptes`` command) stays fast.

The doctests read the sample data in the ``shared`` folder beside the repository:

>>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
>>> getval(SHARED / 'solved.fits.fz', 'FIELD')
'KIC 8462852'
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panoptes_cli.error import PanError

if TYPE_CHECKING:
    import numpy as np
    from astropy.io.fits import Header
    from astropy.wcs import WCS

PathLike = str | os.PathLike

_TRUNCATED = re.compile(r'actual file length \((\d+)\) is smaller than the expected size \((\d+)\)')


class NotAFitsFile(PanError):
    """A file is missing, truncated, or not a FITS file at all."""


def _is_fpacked_name(fn: PathLike) -> bool:
    return os.fspath(fn).endswith('.fz')


def _reason(exc: BaseException) -> str:
    """Turn astropy's or the OS's complaint about a file into a few words."""
    if isinstance(exc, FileNotFoundError):
        return 'no such file'
    if isinstance(exc, IsADirectoryError):
        return 'is a directory'
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    message = str(exc)
    truncated = _TRUNCATED.search(message)
    if truncated:
        return f'truncated: {truncated[1]} of {truncated[2]} bytes'
    # astropy's messages run on with advice ("..., this file does not appear to be ...").
    first = re.split(r'[,.;]\s', message, maxsplit=1)[0].strip().rstrip('.')
    return first[:1].lower() + first[1:] if first else type(exc).__name__


@contextlib.contextmanager
def _reading(fn: PathLike):
    """Turn every way a file can fail to be FITS into one :class:`NotAFitsFile`."""
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            # astropy only warns about a short file and then fails, or returns
            # garbage, when the data is read.
            warnings.filterwarnings('error', message='File may have been truncated',
                                    category=AstropyUserWarning)
            yield
        # Warnings astropy gave on its way to a failure are noise; on success they are news.
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    except PermissionError as exc:
        raise PanError(f'{os.fspath(fn)}: cannot read ({exc.strerror.lower()})') from exc
    except (OSError, AstropyUserWarning) as exc:
        raise NotAFitsFile(f'{os.fspath(fn)}: not a FITS file ({_reason(exc)})') from exc


def _explicit_ext(args: tuple, kwargs: dict) -> bool:
    return bool(args) or any(key in kwargs for key in ('ext', 'extname', 'extver'))


def _image_hdu(hdul):
    """Return the HDU holding the image: the primary one unless it is empty."""
    primary = hdul[0]
    if primary.header.get('NAXIS', 0) == 0 and len(hdul) > 1:
        return hdul[1]
    return primary


def getdata(fn: PathLike, *args, **kwargs) -> np.ndarray | tuple[np.ndarray, Header]:
    """Return the image data of a FITS file, from the HDU that holds it.

    A thin wrapper around ``astropy.io.fits.getdata`` that picks extension 1 of
    an fpacked ``.fz`` file and the primary HDU otherwise (unless an extension
    is given). ``header=True`` returns ``(data, header)``.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> fits_fn = SHARED / 'solved.fits.fz'
    >>> d0 = getdata(fits_fn)
    >>> d0
    array([[2215, 2169, 2200, ..., 2169, 2235, 2168],
           [2123, 2191, 2133, ..., 2212, 2127, 2217],
           [2208, 2154, 2209, ..., 2159, 2233, 2187],
           ...,
           [2120, 2201, 2120, ..., 2209, 2126, 2195],
           [2219, 2151, 2199, ..., 2173, 2214, 2166],
           [2114, 2194, 2122, ..., 2202, 2125, 2204]],
          shape=(700, 700), dtype=uint16)
    >>> d1, h1 = getdata(fits_fn, header=True)
    >>> (d0 == d1).all()
    np.True_
    >>> h1['FIELD']
    'KIC 8462852'

    Args:
        fn: Path to the FITS file.
        *args: Passed to ``astropy.io.fits.getdata``.
        **kwargs: Passed to ``astropy.io.fits.getdata``.

    Returns:
        The image as a numpy array (and its header with ``header=True``).

    Raises:
        NotAFitsFile: The file is missing, truncated or not FITS.
    """
    from astropy.io import fits

    if not _explicit_ext(args, kwargs) and _is_fpacked_name(fn):
        kwargs['ext'] = 1
    with _reading(fn):
        return fits.getdata(fn, *args, **kwargs)


def getheader(fn: PathLike, *args, **kwargs) -> Header:
    """Return the header of the image in a FITS file.

    A thin wrapper around ``astropy.io.fits.getheader`` that picks the image
    HDU: extension 1 of an fpacked file (the image header, not the compression
    one), otherwise the primary HDU. An extension given as an argument or as
    ``ext=`` is used as is.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> header = getheader(SHARED / 'tiny.fits')
    >>> header['IMAGEID']
    'PAN001_XXXXXX_20160909T081152'

    Works with fpacked files:

    >>> header = getheader(str(SHARED / 'solved.fits.fz'))
    >>> header['IMAGEID']
    'PAN001_XXXXXX_20160909T081152'
    >>> 'ZIMAGE' in header
    False

    Args:
        fn: Path to the FITS file.
        *args: Passed to ``astropy.io.fits.getheader``.
        **kwargs: Passed to ``astropy.io.fits.getheader``.

    Returns:
        The header of the image HDU.

    Raises:
        NotAFitsFile: The file is missing, truncated or not FITS.
    """
    from astropy.io import fits

    with _reading(fn):
        if _explicit_ext(args, kwargs):
            return fits.getheader(fn, *args, **kwargs)
        if _is_fpacked_name(fn):
            return fits.getheader(fn, 1, **kwargs)
        with fits.open(fn, **kwargs) as hdul:
            return _image_hdu(hdul).header.copy()


def getval(fn: PathLike, *args, **kwargs) -> Any:
    """Return the value of one keyword from the header of the image in a FITS file.

    Like ``astropy.io.fits.getval`` but reads the image header (see
    :func:`getheader`), not the compression header of an fpacked file.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> getval(SHARED / 'tiny.fits', 'IMAGEID')
    'PAN001_XXXXXX_20160909T081152'
    >>> getval(SHARED / 'solved.fits.fz', 'EXPTIME')
    120.4

    Args:
        fn: Path to the FITS file.
        *args: The keyword, then optionally the extension, as for astropy.
        **kwargs: Passed to ``astropy.io.fits.getheader``.

    Returns:
        The value, with no type conversion.

    Raises:
        KeyError: The keyword is not in the header.
        NotAFitsFile: The file is missing, truncated or not FITS.
    """
    if not args:
        raise TypeError('getval() needs a keyword')
    keyword, *rest = args
    return getheader(fn, *rest, **kwargs)[keyword]


# The manual's heading calls it getvalue, its example getval: both work.
getvalue = getval


def getwcs(fn: PathLike, *args, **kwargs) -> WCS:
    """Return the world coordinate system of the image in a FITS file.

    A thin wrapper around ``astropy.wcs.WCS`` on the header :func:`getheader`
    returns; an image without a WCS gives a non-celestial one.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> wcs = getwcs(SHARED / 'solved.fits.fz')
    >>> wcs.is_celestial
    True
    >>> wcs = getwcs(SHARED / 'unsolved.fits')
    >>> wcs.is_celestial
    False

    Args:
        fn: Path to the FITS file.
        *args: Passed to ``astropy.io.fits.getheader``.
        **kwargs: Passed to ``astropy.io.fits.getheader``.

    Returns:
        The ``astropy.wcs.WCS``.

    Raises:
        NotAFitsFile: The file is missing, truncated or not FITS.
    """
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    header = getheader(fn, *args, **kwargs)
    with warnings.catch_warnings():
        # astropy reports every DATE-OBS it normalises; that is not news to the caller.
        warnings.simplefilter('ignore', FITSFixedWarning)
        return WCS(header)


def _card_value(value):
    """Make a header value astropy can store: quantities and times become plain values."""
    import datetime

    from panoptes_cli.utils import get_quantity_value

    value = get_quantity_value(value)
    if hasattr(value, 'isot'):
        return value.isot
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:
        return value.item()
    return value


def _fill_header(target: Header, header: Header | Mapping | None) -> None:
    from astropy.io.fits import Header

    if header is None:
        return
    if isinstance(header, Header):
        target.extend(header.cards, update=True, strip=True)
        return
    for key, value in header.items():
        if isinstance(value, tuple):
            target[key] = (_card_value(value[0]), *value[1:])
        else:
            target[key] = _card_value(value)


def _temp_name(filename: Path) -> Path:
    """Return an unused hidden name beside ``filename`` for writing it atomically."""
    return filename.with_name(f'.{filename.name}.{uuid.uuid4().hex[:12]}.part')


@contextlib.contextmanager
def _atomic_output(filename: PathLike, overwrite: bool):
    """Yield a temporary path beside ``filename``; move it into place when the block succeeds.

    With ``overwrite=False`` an existing ``filename`` raises FileExistsError,
    before anything is written and again (atomically, through a hard link) at
    the end, so a file that appeared meanwhile is not clobbered either.
    """
    target = Path(filename)
    if not overwrite and target.exists():
        raise FileExistsError(17, 'File exists', os.fspath(target))
    temp = _temp_name(target)
    try:
        yield temp
        if overwrite:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)
            except FileExistsError:
                raise FileExistsError(17, 'File exists', os.fspath(target)) from None
            except OSError:
                # No hard links here (some network and FAT file systems).
                if target.exists():
                    raise FileExistsError(17, 'File exists', os.fspath(target)) from None
                os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _write_hdul(hdul, temp: Path, **kwargs) -> None:
    """Write an HDUList to a new file and make sure it reached the disk."""
    # O_EXCL: the name is ours alone; mode 0o666 lets the umask decide, as for any new file.
    with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), 'wb') as stream:
        hdul.writeto(stream, **kwargs)
        stream.flush()
        os.fsync(stream.fileno())


def write_fits(data, header: Header | Mapping | None, filename: PathLike,
               exposure_event: threading.Event | None = None, **kwargs) -> None:
    """Write an image and its header to a FITS file, atomically.

    The file is written beside ``filename`` under a temporary name, synced to
    disk and then renamed, so readers never see half a file and a failure
    leaves nothing behind. A name ending in ``.fz`` gets a Rice tile-compressed
    file, as ``fpack`` writes it. ``exposure_event`` is set when writing is
    over, whether it succeeded or not, so nothing waits on it forever.

    Fixed from the manual: a failure raises instead of being only logged, and
    nothing is left half-written.

    >>> import numpy as np
    >>> data = np.random.normal(size=100)
    >>> header = {'FILE': 'delete_me', 'TEST': True}
    >>> filename = str(getfixture('tmp_path') / 'temp.fits')
    >>> write_fits(data, header, filename)
    >>> os.path.exists(filename)
    True
    >>> getval(filename, 'FILE')
    'delete_me'
    >>> data2 = getdata(filename)
    >>> np.array_equal(data, data2)
    True
    >>> write_fits(data, header, filename)
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] File exists: '...temp.fits'
    >>> write_fits(data * 2, header, filename, overwrite=True)

    Args:
        data: The image (any array astropy can store).
        header: Keywords for the header: a dict (values may be ``(value,
            comment)`` tuples, astropy Quantities or times) or an astropy Header.
        filename: Where to write; the directory must exist.
        exposure_event: A ``threading.Event`` to set when done.
        **kwargs: ``overwrite`` (default False, as astropy), ``checksum`` and
            ``output_verify`` as for ``astropy.io.fits.HDUList.writeto``.

    Raises:
        FileExistsError: ``filename`` exists and ``overwrite`` is not set.
        OSError: The file could not be written.
    """
    from astropy.io import fits

    overwrite = kwargs.pop('overwrite', False)
    try:
        if _is_fpacked_name(filename):
            image = fits.CompImageHDU(data, compression_type='RICE_1')
            hdul = fits.HDUList([fits.PrimaryHDU(), image])
        else:
            image = fits.PrimaryHDU(data)
            hdul = fits.HDUList([image])
        _fill_header(image.header, header)
        with _atomic_output(filename, overwrite) as temp:
            _write_hdul(hdul, temp, **kwargs)
    finally:
        if exposure_event is not None:
            exposure_event.set()


# Observation status key -> (FITS keyword, comment, unit its number is stored in).
_OBSERVATION_KEYWORDS = {
    'image_id': ('IMAGEID', None, None),
    'sequence_id': ('SEQID', None, None),
    'field_name': ('FIELD', None, None),
    'ra_mnt': ('RA-MNT', 'Degrees', 'deg'),
    'ha_mnt': ('HA-MNT', 'Degrees', 'deg'),
    'dec_mnt': ('DEC-MNT', 'Degrees', 'deg'),
    'equinox': ('EQUINOX', None, None),
    'airmass': ('AIRMASS', 'Sec(z)', None),
    'filter': ('FILTER', None, None),
    'latitude': ('LAT-OBS', 'Degrees', 'deg'),
    'longitude': ('LONG-OBS', 'Degrees', 'deg'),
    'elevation': ('ELEV-OBS', 'Meters', 'm'),
    'moon_separation': ('MOONSEP', 'Degrees', 'deg'),
    'moon_fraction': ('MOONFRAC', None, None),
    'creator': ('CREATOR', 'POCS Software version', None),
    'camera_uid': ('INSTRUME', 'Camera ID', None),
    'observer': ('OBSERVER', 'PANOPTES Unit ID', None),
    'origin': ('ORIGIN', None, None),
    'tracking_rate_ra': ('RA-RATE', 'RA Tracking Rate', None),
}


def _parse_quantity(text: str):
    """Read a serialized quantity such as ``'19.54 deg'``; other text stays as it is."""
    from astropy import units as u

    try:
        return u.Quantity(text)
    except (TypeError, ValueError):
        return text


def _observation_cards(info: Mapping) -> list[tuple[str, Any, str | None]]:
    from panoptes_cli.utils import get_quantity_value

    cards = []
    for key, (keyword, comment, unit) in _OBSERVATION_KEYWORDS.items():
        value = info.get(key)
        if value is None:
            continue
        if unit is not None and isinstance(value, str):
            value = _parse_quantity(value)
        if unit is not None and hasattr(value, 'unit'):
            value = get_quantity_value(value, unit)
        cards.append((keyword, _card_value(value), comment))
    return cards


def _rewrite(fits_fname: PathLike, change) -> None:
    """Apply ``change(hdul)`` to a FITS file and write the result atomically over it."""
    from astropy.io import fits

    with _reading(fits_fname):
        hdul = fits.open(fits_fname, do_not_scale_image_data=True)
    with hdul:
        change(hdul)
        with _atomic_output(fits_fname, overwrite=True) as temp:
            _write_hdul(hdul, temp, checksum=_has_checksums(hdul))


def _has_checksums(hdul) -> bool:
    return any('CHECKSUM' in hdu.header for hdu in hdul)


def update_observation_headers(file_path: PathLike, info: Mapping) -> None:
    """Write the observation's details into the header of the image in a FITS file.

    The keys of a POCS ``Observation.status`` dict map to IMAGEID, SEQID,
    FIELD, RA-MNT, HA-MNT, DEC-MNT, EQUINOX, AIRMASS, FILTER, LAT-OBS, LONG-OBS,
    ELEV-OBS, MOONSEP, MOONFRAC, CREATOR, INSTRUME, OBSERVER, ORIGIN and
    RA-RATE (``image_id``, ``sequence_id``, ``field_name``, ``ra_mnt``,
    ``ha_mnt``, ``dec_mnt``, ``equinox``, ``airmass``, ``filter``,
    ``latitude``, ``longitude``, ``elevation``, ``moon_separation``,
    ``moon_fraction``, ``creator``, ``camera_uid``, ``observer``, ``origin``,
    ``tracking_rate_ra``). Quantities are stored in degrees or metres.

    Fixed from the manual: keys missing from ``info`` leave their keywords
    alone instead of blanking them; the file is rewritten atomically, with its
    checksums renewed if it had any; fpacked files work; and the manual's
    example expected 'Tabrys Star' back from 'Tabbys Star'.

    >>> import shutil
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> fits_fn = shutil.copy(SHARED / 'unsolved.fits', getfixture('tmp_path'))
    >>> getval(fits_fn, 'FIELD')
    'KIC 8462852'
    >>> info = {'field_name': 'Tabbys Star'}
    >>> update_observation_headers(fits_fn, info)
    >>> getval(fits_fn, 'FIELD')
    'Tabbys Star'
    >>> getval(fits_fn, 'IMAGEID')
    'PAN001_XXXXXX_20160909T081152'

    Args:
        file_path: Path to a FITS file, plain or fpacked.
        info: The observation status dict.

    Raises:
        NotAFitsFile: The file is missing, truncated or not FITS.
    """
    cards = _observation_cards(info)
    if not cards:
        return

    def change(hdul):
        header = _image_hdu(hdul).header
        for keyword, value, comment in cards:
            if comment is None:
                header[keyword] = value
            else:
                header[keyword] = (value, comment)

    _rewrite(file_path, change)


def _structure(path: PathLike, what: str | None = None):
    """Walk a FITS file's HDUs; a cut or foreign file raises NotAFitsFile for ``what``."""
    from panoptes_cli.images._fits_structure import StructureError, walk

    try:
        return walk(path)
    except FileNotFoundError as exc:
        raise NotAFitsFile(f'{os.fspath(what or path)}: not a FITS file (no such file)') from exc
    except IsADirectoryError as exc:
        raise NotAFitsFile(f'{os.fspath(what or path)}: not a FITS file (is a directory)') from exc
    except StructureError as exc:
        raise NotAFitsFile(f'{os.fspath(what or path)}: not a FITS file ({exc})') from exc


def _sync(path: Path) -> None:
    """Make sure a file someone else wrote is on the disk before its original goes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _run_cfitsio_tool(program: str, options: list[str], source: Path, temp: Path) -> None:
    import subprocess

    source_arg = os.fspath(source)
    if source_arg.startswith('-'):
        # Not an option, nor ("-") standard input.
        source_arg = f'./{source_arg}'
    completed = subprocess.run([program, *options, '-O', os.fspath(temp), source_arg],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if completed.returncode != 0:
        lines = [line.strip() for line in (completed.stderr + completed.stdout).splitlines()
                 if line.strip()]
        why = lines[-1] if lines else f'exit status {completed.returncode}'
        raise PanError(f'{source}: {Path(program).name} failed ({why})')


def _compressed_hdu(hdu):
    """Tile-compress one image HDU losslessly, its stored integers untouched."""
    from astropy.io import fits

    header = hdu.header.copy()
    for key in ('BSCALE', 'BZERO'):
        header.remove(key, ignore_missing=True)
    if header['BITPIX'] < 0:
        # fpack's default quantises floats, which loses data; GZIP with no quantising does not.
        options = {'compression_type': 'GZIP_2', 'quantize_level': 0.0}
    else:
        options = {'compression_type': 'RICE_1'}
    compressed = fits.CompImageHDU(hdu.data, header, do_not_scale_image_data=True, **options)
    _restore_cards(compressed.header, hdu.header)
    return compressed


def _restore_cards(new: Header, old: Header) -> None:
    """Put back the scaling keywords and comments astropy drops when it builds an image HDU.

    Given after the fact, BSCALE and BZERO are stored but not applied to the
    raw integers, which is what keeps a round trip bit-exact.
    """
    after = f"NAXIS{old.get('NAXIS', 0)}" if old.get('NAXIS') else 'NAXIS'
    for key in ('BSCALE', 'BZERO'):
        if key in old:
            new.set(key, old[key], old.comments[key], after=after)
            after = key
    for card in old.cards:
        if card.keyword in new and card.comment != new.comments[card.keyword]:
            with contextlib.suppress(KeyError, IndexError, ValueError):
                new.comments[card.keyword] = card.comment


def _astropy_pack(source: Path, temp: Path) -> None:
    from astropy.io import fits

    with _reading(source), fits.open(source, do_not_scale_image_data=True) as hdul:
        packed = []
        for index, hdu in enumerate(hdul):
            if hdu.is_image and hdu.header.get('NAXIS', 0) > 0:
                if index == 0:
                    packed.append(fits.PrimaryHDU())
                packed.append(_compressed_hdu(hdu))
            else:
                packed.append(hdu)
        _write_hdul(fits.HDUList(packed), temp, checksum=True)


def _astropy_unpack(source: Path, temp: Path) -> None:
    from astropy.io import fits

    with _reading(source), fits.open(source, do_not_scale_image_data=True) as hdul:
        unpacked = []
        for index, hdu in enumerate(hdul):
            if not isinstance(hdu, fits.CompImageHDU):
                unpacked.append(hdu)
                continue
            header = hdu.header.copy()
            if index == 1 and 'SIMPLE' in header and unpacked[0].header.get('NAXIS', 0) == 0:
                # The image was the primary HDU before fpack moved it into extension 1.
                image = unpacked[0] = fits.PrimaryHDU(hdu.data, header,
                                                      do_not_scale_image_data=True)
            else:
                image = fits.ImageHDU(hdu.data, header, do_not_scale_image_data=True)
                unpacked.append(image)
            _restore_cards(image.header, header)
        _write_hdul(fits.HDUList(unpacked), temp, checksum=True)


def _packed_name(source: Path, unpack: bool) -> Path:
    if unpack:
        if not source.name.endswith('.fz') or source.name == '.fz':
            raise PanError(f'{source}: cannot unpack (the name does not end in .fz)')
        return source.with_name(source.name[:-3])
    if source.name.endswith('.fz'):
        raise PanError(f'{source}: already packed (the name ends in .fz)')
    return source.with_name(f'{source.name}.fz')


def fpack(fits_fname: PathLike, unpack: bool = False, overwrite: bool = True,
          keep_original: bool = False) -> str:
    """Compress a FITS file into ``<name>.fz``, or with ``unpack=True`` decompress one.

    Uses cfitsio's ``fpack``/``funpack`` when they are installed and astropy's
    tile compression when they are not: Rice for integer images, which is
    lossless and what fpack does, and lossless GZIP for floating-point images
    (where fpack would quantise, losing precision). Either way the files are
    interchangeable with the binaries'.

    The output is written under a temporary name beside the input, checked
    to be a whole FITS file with the same images, synced to disk and renamed;
    only then is the original removed (unless ``keep_original``).

    Fixed from the manual: ``overwrite=False`` raises FileExistsError instead
    of being ignored, a failure leaves the original and no partial output,
    and floating-point images are no longer quantised.

    >>> import shutil
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> fits_fn = shutil.copy(SHARED / 'tiny.fits', getfixture('tmp_path'))
    >>> packed = fpack(fits_fn)
    >>> os.path.basename(packed), os.path.exists(fits_fn)
    ('tiny.fits.fz', False)
    >>> getval(packed, 'IMAGEID')
    'PAN001_XXXXXX_20160909T081152'
    >>> os.path.basename(funpack(packed))
    'tiny.fits'

    Args:
        fits_fname: The FITS file (``.fz`` to unpack).
        unpack: Decompress instead of compress.
        overwrite: Replace an existing output file; if False, it raises FileExistsError.
        keep_original: Keep the input file instead of removing it.

    Returns:
        The name of the compressed (or decompressed) file.

    Raises:
        FileExistsError: The output exists and ``overwrite`` is False.
        NotAFitsFile: The input is missing, truncated or not FITS.
        PanError: The input is already (or, to unpack, not) compressed, or
            the tool failed or wrote an incomplete file.
    """
    import shutil

    from panoptes_cli.images._fits_structure import image_signatures

    source = Path(fits_fname)
    target = _packed_name(source, unpack)
    hdus = _structure(source)
    compressed = any(hdu.compressed for hdu in hdus)
    if unpack and not compressed:
        raise PanError(f'{source}: cannot unpack (no compressed image in it)')
    if not unpack and compressed:
        raise PanError(f'{source}: already packed (it holds a compressed image)')

    program = shutil.which('funpack' if unpack else 'fpack')
    tool = Path(program).name if program else 'astropy'
    with _atomic_output(target, overwrite) as temp:
        if program and unpack:
            _run_cfitsio_tool(program, [], source, temp)
        elif program:
            floats = any(bitpix < 0 for bitpix, _ in image_signatures(hdus))
            _run_cfitsio_tool(program, ['-g2', '-q', '0'] if floats else [], source, temp)
        elif unpack:
            _astropy_unpack(source, temp)
        else:
            _astropy_pack(source, temp)
        written = _structure(temp, what=target)
        if image_signatures(written) != image_signatures(hdus):
            raise PanError(f'{source}: {tool} wrote images that differ from the input; '
                           'the original is kept')
        _sync(temp)
    _sync_directory(target)
    if not keep_original:
        source.unlink()
    return os.fspath(target)


def funpack(*args, **kwargs) -> str:
    """Decompress an fpacked FITS file: :func:`fpack` with ``unpack=True``.

    >>> import shutil
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> packed = shutil.copy(SHARED / 'solved.fits.fz', getfixture('tmp_path'))
    >>> unpacked = funpack(packed)
    >>> os.path.basename(unpacked)
    'solved.fits'
    >>> getwcs(unpacked).is_celestial
    True

    Args:
        *args: Passed to :func:`fpack`.
        **kwargs: Passed to :func:`fpack`.

    Returns:
        The name of the decompressed file.
    """
    return fpack(*args, unpack=True, **kwargs)
