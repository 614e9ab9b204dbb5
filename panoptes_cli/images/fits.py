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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panoptes_cli.error import IllegalValue, NotFound, PanError, SolveError
from panoptes_cli.files import atomic_path

if TYPE_CHECKING:
    import numpy as np
    from astropy.io.fits import Header
    from astropy.wcs import WCS

PathLike = str | os.PathLike

# Temporary files end in .part, which no FITS tool mistakes for a format (cfitsio, writing
# fpack's output, would gzip a name ending in .gz).
_TEMP_SUFFIX = '.part'

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


def _json_value(value):
    """A header value as JSON can hold it: astropy's "no value" becomes None."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, complex):
        return [value.real, value.imag]
    return None


def _extension_index(fn: PathLike, hdus: list, ext: int | str | None) -> int:
    """The index of the HDU ``ext`` names (a number or an EXTNAME), else the image's."""
    if ext is None:
        return _image_extension(hdus)
    if isinstance(ext, int):
        if -len(hdus) <= ext < len(hdus):
            return ext % len(hdus)
    else:
        for n, hdu in enumerate(hdus):
            name = hdu.cards.get('EXTNAME', 'PRIMARY' if n == 0 else '')
            if str(name).upper() == ext.upper():
                return n
    raise KeyError(f'{os.fspath(fn)}: no extension {ext!r}')


def _astropy_header_values(fn: PathLike, index: int) -> dict:
    """A header's values as astropy reads them, for the headers the fast reader declines."""
    from astropy.io import fits

    values = {}
    with _reading(fn), fits.open(fn) as hdul:
        for card in hdul[index].header.cards:
            if card.keyword in ('COMMENT', 'HISTORY'):
                values.setdefault(card.keyword, []).append(str(card.value))
            elif card.keyword:
                values[card.keyword] = _json_value(card.value)
    return values


def _header_values(fn: PathLike, hdus: list, index: int) -> dict:
    """The keywords and values of HDU ``index`` of a walked file, without astropy if it can."""
    from panoptes_cli.images import _fits_header

    hdu = hdus[index]
    values = _fits_header.parse(hdu.header, compressed=hdu.compressed)
    return values if values is not None else _astropy_header_values(fn, index)


def header_record(fn: PathLike, keywords: list[str] | None = None,
                  ext: int | str | None = None) -> dict:
    """Return the header of the image in a FITS file as a JSON-ready dict.

    The record is ``{'filename', 'hdu', 'header'}``: ``hdu`` is the index of
    the HDU read (the image's, as :func:`getheader` picks it, unless ``ext``
    is given as a number or an EXTNAME); ``header`` maps each keyword to its
    value, COMMENT and HISTORY to lists of lines. With ``keywords`` only
    those are given, None for the missing ones.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> record = header_record(SHARED / 'solved.fits.fz', ['FIELD', 'EXPTIME', 'NOSUCH'])
    >>> record['filename'], record['hdu']
    ('.../solved.fits.fz', 1)
    >>> record['header']
    {'FIELD': 'KIC 8462852', 'EXPTIME': 120.4, 'NOSUCH': None}

    Raises:
        NotAFitsFile: The file is missing, truncated or not FITS.
        KeyError: There is no such extension.
    """
    hdus = _structure(fn)
    index = _extension_index(fn, hdus, ext)
    values = _header_values(fn, hdus, index)
    if keywords:
        values = {key: values.get(key.upper()) for key in keywords}
    return {'filename': os.fspath(fn), 'hdu': index, 'header': values}


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
        IllegalValue: The data cannot be stored in a FITS file.
        OSError: The file could not be written.
    """
    from astropy.io import fits

    overwrite = kwargs.pop('overwrite', False)
    try:
        try:
            if _is_fpacked_name(filename):
                image = fits.CompImageHDU(data, compression_type='RICE_1')
                hdul = fits.HDUList([fits.PrimaryHDU(), image])
            else:
                image = fits.PrimaryHDU(data)
                hdul = fits.HDUList([image])
        except (KeyError, TypeError, ValueError) as exc:
            # astropy's KeyError for, say, an object array says only "dtype('O')".
            dtype = getattr(data, 'dtype', type(data).__name__)
            raise IllegalValue(f'{os.fspath(filename)}: data of type {dtype} cannot be '
                               f'written as FITS ({exc})') from exc
        _fill_header(image.header, header)
        with atomic_path(filename, overwrite, suffix=_TEMP_SUFFIX, durable=True) as temp:
            hdul.writeto(temp, **kwargs)
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
        with atomic_path(fits_fname, suffix=_TEMP_SUFFIX, durable=True) as temp:
            hdul.writeto(temp, checksum=_has_checksums(hdul))


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
    except (FileNotFoundError, IsADirectoryError, StructureError) as exc:
        why = exc if isinstance(exc, StructureError) else _reason(exc)
        raise NotAFitsFile(f'{os.fspath(what or path)}: not a FITS file ({why})') from exc


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
        fits.HDUList(packed).writeto(temp, checksum=True)


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
        fits.HDUList(unpacked).writeto(temp, checksum=True)


def _pack_into(source: Path, temp: Path, unpack: bool, hdus: list) -> None:
    """Compress (or decompress) ``source`` into the new file ``temp`` and check the result.

    ``hdus`` is the input's structure, as :func:`_structure` read it.
    """
    import shutil

    from panoptes_cli.images._fits_structure import image_signatures

    program = shutil.which('funpack' if unpack else 'fpack')
    if program and unpack:
        _run_cfitsio_tool(program, [], source, temp)
    elif program:
        floats = any(bitpix < 0 for bitpix, _ in image_signatures(hdus))
        _run_cfitsio_tool(program, ['-g2', '-q', '0'] if floats else [], source, temp)
    elif unpack:
        _astropy_unpack(source, temp)
    else:
        _astropy_pack(source, temp)
    written = _structure(temp, what=_packed_name(source, unpack))
    if image_signatures(written) != image_signatures(hdus):
        tool = Path(program).name if program else 'astropy'
        raise PanError(f'{source}: {tool} wrote images that differ from the input; '
                       'the original is kept')


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
    source = Path(fits_fname)
    target = _packed_name(source, unpack)
    hdus = _structure(source)
    compressed = any(hdu.compressed for hdu in hdus)
    if unpack and not compressed:
        raise PanError(f'{source}: cannot unpack (no compressed image in it)')
    if not unpack and compressed:
        raise PanError(f'{source}: already packed (it holds a compressed image)')

    with atomic_path(target, overwrite, suffix=_TEMP_SUFFIX, durable=True) as temp:
        _pack_into(source, temp, unpack, hdus)
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


def _image_extension(hdus: list) -> int:
    """The index of the first HDU holding an image (0 for a plain file, 1 for an fpacked one)."""
    return next((index for index, hdu in enumerate(hdus) if hdu.is_image), 0)


def _image_size(hdus: list) -> tuple[int, int]:
    from panoptes_cli.images._fits_structure import image_signatures

    signatures = image_signatures(hdus)
    axes = signatures[0][1] if signatures else ()
    return (axes[0], axes[1]) if len(axes) >= 2 else (0, 0)


def _pointing_hint(fits_fname: PathLike, hdus: list) -> tuple[float, float] | None:
    """The mount's RA/Dec from the RA-MNT/DEC-MNT headers, if both are numbers."""
    header = _header_values(fits_fname, hdus, _image_extension(hdus))
    ra, dec = header.get('RA-MNT'), header.get('DEC-MNT')
    if isinstance(ra, int | float) and isinstance(dec, int | float) and not isinstance(
            ra, bool) and not isinstance(dec, bool):
        return float(ra), float(dec)
    return None


def solve_field(fname: PathLike, timeout: float = 15, solve_opts: list[str] | None = None,
                *args, **kwargs):
    """Start astrometry.net's ``solve-field`` on an image and return the running process.

    A low-level wrapper: :func:`get_solve_field` waits for the result and puts
    it in the file. solve-field works in a private temporary directory (all its
    temporary and output files go there, none beside the image); an fpacked
    image is unpacked into it first. The returned
    :class:`~panoptes_cli.images._solve.SolveFieldProcess` is a
    ``subprocess.Popen`` whose ``communicate()`` and ``wait()`` stop
    solve-field and its helpers when ``timeout`` seconds of wall-clock time
    have passed (raising :class:`~panoptes_cli.error.Timeout`); use it in a
    ``with`` block, which removes the private directory. The solution, if one
    is found, is in its ``wcs_file``.

    Without ``solve_opts`` the options are the manual's (``--guess-scale
    --cpulimit <timeout> --no-verify --crpix-center --temp-axy`` and no
    outputs besides the WCS) with a downsampling that suits the image size
    (4 for a full frame, none for a 200-pixel crop), and the mount position in
    the RA-MNT/DEC-MNT headers as a hint (within ``radius``, 15 degrees by
    default) unless ``ra`` and ``dec`` are given.

    Fixed from the manual: boolean options are passed as bare flags (True)
    or left out (False); the timeout bounds the wall-clock time, not only the
    CPU time; solve-field's files stay out of the image's directory.

    Args:
        fname: The FITS image, plain or fpacked.
        timeout: Seconds solve-field may take, in wall-clock time (and CPU time).
        solve_opts: solve-field options to use instead of the defaults.
        *args: More solve-field arguments, appended as given.
        **kwargs: ``ra``, ``dec`` (degrees) and ``radius`` (degrees) for where
            to search; ``index_dir`` (a directory or a list of them) to use the
            index files there instead of the system's; and solve-field options
            as ``'--option': value`` (True for a flag), e.g. ``'--config': path``
            for a backend config file.

    Returns:
        The running solve-field process.

    Raises:
        InvalidCommand: solve-field is not installed.
        NotAFitsFile: The image is missing, truncated or not FITS.
    """
    from panoptes_cli.images import _solve
    from panoptes_cli.utils import listify

    program = _solve.find_program('solve-field')
    source = Path(fname)
    hdus = _structure(source)
    ra, dec = kwargs.pop('ra', None), kwargs.pop('dec', None)
    radius = kwargs.pop('radius', None)
    index_dirs = listify(kwargs.pop('index_dir', None))
    unknown = [key for key in kwargs if not key.startswith('-')]
    if unknown:
        raise TypeError(f'solve_field() got unexpected keyword arguments: {", ".join(unknown)}')
    if (ra is None) != (dec is None):
        raise IllegalValue('solve_field: give both ra and dec, or neither')

    workdir = _solve.make_workdir()
    try:
        if any(hdu.compressed for hdu in hdus):
            # solve-field misreads some tile-compressed files (astrometry.net issue 182).
            if source.name.endswith('.fz'):
                solve_file = workdir / source.name[:-3]
            else:
                solve_file = workdir / f'{source.name}.fits'
            _pack_into(source, solve_file, True, hdus)
        else:
            solve_file = source
        if solve_opts is None:
            options = [*_solve.DEFAULT_OPTIONS, '--cpulimit', str(max(1, round(timeout)))]
            if '--downsample' not in kwargs:
                options += ['--downsample', str(_solve.downsample_for(*_image_size(hdus)))]
        else:
            options = list(solve_opts)
        if ra is None and '--ra' not in kwargs:
            ra, dec = _pointing_hint(source, hdus) or (None, None)
        if ra is not None:
            options += ['--ra', str(ra), '--dec', str(dec),
                        '--radius', str(radius if radius is not None else _solve.DEFAULT_RADIUS)]
        if index_dirs:
            options += ['--config', os.fspath(_solve.index_config(index_dirs, workdir))]
        options += _solve.option_args(kwargs)
        options += [str(arg) for arg in args]
        wcs_file = workdir / f'{solve_file.stem}.wcs'
        options += ['--dir', os.fspath(workdir), '--temp-dir', os.fspath(workdir),
                    '--wcs', os.fspath(wcs_file), '--overwrite']
        return _solve.SolveFieldProcess([program, *options, os.fspath(solve_file)],
                                        fits_file=source, solve_file=solve_file,
                                        wcs_file=wcs_file, workdir=workdir, timeout=timeout)
    except BaseException:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _header_dict(header) -> dict:
    """A header's keywords and values, without COMMENT, HISTORY and blank cards."""
    return {card.keyword: card.value for card in header.cards
            if card.keyword not in ('COMMENT', 'HISTORY', '')}


_LONGITUDES = ('RA--', 'GLON', 'ELON', 'SLON', 'HLON')
_LATITUDES = ('DEC-', 'GLAT', 'ELAT', 'SLAT', 'HLAT')


def _solved_header(fits_fname: PathLike) -> dict | None:
    """The image's header if it has a celestial WCS (both sky axes), else None.

    Read from CTYPE1/CTYPE2 rather than through astropy.wcs, whose import
    alone would cost ``panoptes fits solve`` half a second.
    """
    header = header_record(fits_fname)['header']
    axes = {str(header.get('CTYPE1', ''))[:4], str(header.get('CTYPE2', ''))[:4]}
    if axes & set(_LONGITUDES) and axes & set(_LATITUDES):
        return {key: value for key, value in header.items() if key not in ('COMMENT', 'HISTORY')}
    return None


def _write_solution(process, target: Path, replace: bool, overwrite: bool):
    """Put the WCS solve-field found into ``target``; return the new image header.

    In place, a plain file keeps its bytes but for the header; an fpacked one
    is repacked from the unpacked copy. A ``.new`` file is written plain, as
    solve-field writes it.
    """
    from astropy.io import fits

    from panoptes_cli.images import _solve

    with _reading(process.wcs_file):
        cards = _solve.wcs_cards(fits.getheader(process.wcs_file))
    solved_header = None

    def change(hdul):
        nonlocal solved_header
        header = _image_hdu(hdul).header
        _solve.remove_wcs(header)
        header.extend(cards, update=True)
        solved_header = header.copy()

    source = process.fits_file
    if replace and process.solve_file == source:
        _rewrite(source, change)
        return solved_header
    with _reading(process.solve_file), fits.open(process.solve_file,
                                                 do_not_scale_image_data=True) as hdul:
        change(hdul)
        checksum = _has_checksums(hdul)
        if replace:
            solved = process.workdir / f'solved-{process.solve_file.name}'
            # A scratch file in the working directory: no need to sync it to disk.
            hdul.writeto(solved, checksum=checksum)
            with atomic_path(target, suffix=_TEMP_SUFFIX, durable=True) as temp:
                _pack_into(solved, temp, False, _structure(solved))
        else:
            with atomic_path(target, overwrite, suffix=_TEMP_SUFFIX, durable=True) as temp:
                hdul.writeto(temp, checksum=checksum)
    return solved_header


def _import_in_background(module: str) -> None:
    import importlib
    import sys

    if module not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(module,),
                         name=f'import {module}').start()


def get_solve_field(fname: PathLike, replace: bool = True, overwrite: bool = True,
                    timeout: float = 30, skip_solved: bool = True, **kwargs) -> dict:
    """Plate-solve an image with solve-field and write the solution into its header.

    Runs :func:`solve_field`, waits for it (at most ``timeout`` seconds of
    wall-clock time), and writes the WCS it found into the file's image
    header, atomically: in place with ``replace`` (an fpacked file is
    repacked), else into ``<name>.new`` beside it. An image that already has a
    celestial WCS is not solved again unless ``skip_solved=False``.

    Fixed from the manual: a solve that finds nothing raises SolveError
    (solve-field itself exits 0 then), a timeout stops solve-field and raises
    Timeout, and solve-field's files are cleaned up in every case. EQUINOX
    and the image's other keywords are kept as they were (solve-field's own
    ``.new`` file renames some of them).

    >>> import shutil
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> tmp_path = getfixture('tmp_path')
    >>> fits_fn = shutil.copy(SHARED / 'unsolved.fits', tmp_path)
    >>> config = tmp_path / 'backend.cfg'
    >>> _ = config.write_text(f"index {SHARED / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'}")

    Perform the solve, then show the solved filename and where it points:

    >>> solve_info = get_solve_field(fits_fn, **{'--config': config})
    >>> solve_info['solved_fits_file']
    '.../unsolved.fits'
    >>> round(solve_info['ra_center'], 1), round(solve_info['dec_center'], 1)
    (303.2, 46.0)
    >>> getwcs(fits_fn).is_celestial
    True

    Pass a suggested location, and solve-field options (True for a flag):

    >>> solve_kwargs = {'--config': config, '--pnm': tmp_path / 'awesome.pnm', '--no-tweak': True}
    >>> solve_info = get_solve_field(fits_fn, ra=303.2, dec=46.0, radius=5, skip_solved=False,
    ...                              **solve_kwargs)
    >>> os.path.exists(tmp_path / 'awesome.pnm')
    True

    Args:
        fname: The FITS image, plain or fpacked.
        replace: Write the solution into ``fname``; if False, into ``<name>.new``.
        overwrite: Replace an existing ``.new`` file (it must be True with ``replace``).
        timeout: Seconds the solve may take, wall-clock.
        skip_solved: Return an already solved image's WCS without solving again.
        **kwargs: Passed to :func:`solve_field`.

    Returns:
        The solved image's header keywords, what ``wcsinfo`` says about the
        solution (``ra_center``, ``dec_center``, ``pixscale``, ``orientation``,
        ``fieldw``, ``fieldh``, ``fieldunits`` ...), ``solved_fits_file``, and
        ``skipped`` (True if the image had been solved before).

    Raises:
        SolveError: solve-field found no solution.
        Timeout: It ran out of time.
        InvalidCommand: solve-field or wcsinfo is not installed.
        NotAFitsFile: The image is missing, truncated or not FITS.
        FileExistsError: The ``.new`` file exists and ``overwrite`` is False.
    """
    from panoptes_cli.images import _solve

    source = Path(fname)
    if replace and not overwrite:
        raise IllegalValue(f'{source}: replacing the file with its solution needs overwrite=True')
    solved_header = _solved_header(source) if skip_solved else None
    if solved_header is not None:
        info = {**solved_header, **get_wcsinfo(source)}
        return {**info, 'solved_fits_file': os.fspath(source), 'skipped': True}
    target = source if replace else (
        source.with_name(source.name[:-3]) if source.name.endswith('.fz') else source
    ).with_suffix('.new')
    if not overwrite and target.exists():
        raise FileExistsError(17, 'File exists', os.fspath(target))

    with solve_field(source, timeout=timeout, **kwargs) as process:
        # Writing the solution needs astropy: import it while solve-field works,
        # rather than after (half a second off a one-file ``panoptes fits solve``).
        _import_in_background('astropy.io.fits')
        output, _ = process.communicate()
        if not process.wcs_file.exists():
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            if process.returncode:
                why = f'solve-field failed: {lines[-1] if lines else process.returncode}'
            else:
                why = ('no solution found; check that the index files cover this field and '
                       'scale (index_dir or a backend config)')
            raise SolveError(f'{source}: {why}')
        wcs_info = _solve.run_wcsinfo(process.wcs_file, 0, {}) or {}
        header = _write_solution(process, target, replace, overwrite)
    return {**_header_dict(header), **wcs_info, 'solved_fits_file': os.fspath(target),
            'skipped': False}


def get_wcsinfo(fits_fname: PathLike, **kwargs) -> dict:
    """Return what astrometry.net's ``wcsinfo`` says about the WCS of a solved image.

    Reads the image HDU (extension 1 of an fpacked file). Numbers come back as
    int or float, the rest as strings, plus ``wcs_file``.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> info = get_wcsinfo(SHARED / 'solved.fits.fz')
    >>> round(info['ra_center'], 2), round(info['dec_center'], 2), round(info['pixscale'], 1)
    (303.21, 46.02, 10.3)
    >>> info['imagew'], info['fieldunits']
    (700, 'degrees')

    Fixed from the manual: fpacked files work, the image size comes from the
    image (not from the compressed table), and an image without a WCS raises
    NotFound instead of returning an empty dict.

    Args:
        fits_fname: A plate-solved FITS image, plain or fpacked.
        **kwargs: wcsinfo options as ``'-x': value``.

    Returns:
        wcsinfo's keys and values (``ra_center``, ``dec_center`` and
        ``orientation`` in degrees, ``pixscale`` in arcsec/pixel, ``fieldw``
        and ``fieldh`` in ``fieldunits``, ...).

    Raises:
        InvalidCommand: wcsinfo is not installed.
        NotAFitsFile: The file is missing, truncated or not FITS.
        NotFound: The image has no WCS.
    """
    from panoptes_cli.images import _solve

    source = Path(fits_fname)
    hdus = _structure(source)
    width, height = _image_size(hdus)
    options = dict(kwargs)
    if width and height:
        options.setdefault('-W', width)
        options.setdefault('-H', height)
    info = _solve.run_wcsinfo(source, _image_extension(hdus), options)
    if info is None:
        raise NotFound(f'{source}: no WCS in the header (not plate-solved yet)')
    return {**info, 'wcs_file': os.fspath(source)}


def solve_fields(fnames: list[PathLike], jobs: int | None = None, **kwargs):
    """Plate-solve many images in parallel; yield one result per image as each finishes.

    Each image goes through :func:`get_solve_field` (``kwargs`` are passed on).
    A result is a dict: ``filename``, ``solved``, and for a solution
    ``solved_file``, ``ra`` and ``dec`` of the centre and ``rotation`` (degrees),
    ``pixel_scale`` (arcsec/pixel), ``field_width`` and ``field_height``
    (degrees), ``skipped``; for a failure ``error``; always ``seconds``.
    Closing the generator early (Ctrl-C) stops the solves still running.

    Args:
        fnames: The images.
        jobs: How many solve at once; the number of CPU cores by default.
        **kwargs: Passed to :func:`get_solve_field`.

    Yields:
        One result dict per image, in the order they finish.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from panoptes_cli.images import _solve

    batch = _solve.SolveBatch()

    def solve_one(fname) -> dict:
        _solve.current_batch.set(batch)
        started = time.monotonic()
        try:
            if batch.cancelled:
                raise PanError(f'{fname}: cancelled')
            info = get_solve_field(fname, **kwargs)
        except (PanError, OSError, ValueError) as exc:
            return _solve.failure(os.fspath(fname), exc, time.monotonic() - started)
        return _solve.summary(os.fspath(fname), info, time.monotonic() - started,
                              skipped=info['skipped'])

    executor = ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1),
                                  thread_name_prefix='solve')
    futures = [executor.submit(solve_one, fname) for fname in fnames]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        batch.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
