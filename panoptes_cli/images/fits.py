"""Read and write FITS images; compress and plate-solve them (re-exported here).

The readers (:func:`getdata`, :func:`getheader`, :func:`getval`,
:func:`getwcs`) find the image HDU on their own: an fpacked ``.fz`` file keeps
its image in extension 1 behind an empty primary HDU, a plain file in the
primary HDU. Every writer goes through a temporary file in the target's
directory and ``os.replace``, so a crash never leaves half a FITS file behind.

Compression (:func:`fpack`, :func:`funpack`) lives in
:mod:`panoptes_cli.images.packing` and plate solving (:func:`solve_field`,
:func:`get_solve_field`, :func:`get_wcsinfo`, :func:`solve_fields`) in
:mod:`panoptes_cli.images.solve`; both are importable from here, as the
manual documents them.

astropy and numpy are imported inside the functions that use them, so that
importing this module (and the ``panoptes`` command) stays fast.

The doctests read the sample data in the ``shared`` folder beside the repository:

>>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
>>> getval(SHARED / 'solved.fits.fz', 'FIELD')
'KIC 8462852'
"""

from __future__ import annotations

import datetime
import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panoptes_cli.error import IllegalValue, NotAFitsFile, PanError
from panoptes_cli.files import atomic_path
from panoptes_cli.images._fits_io import (
    TEMP_SUFFIX, header_values, image_extension, image_hdu, is_fpacked_name,
    reading, rewrite, structure)
from panoptes_cli.images.packing import fpack, funpack
from panoptes_cli.images.solve import get_solve_field, get_wcsinfo, solve_field
from panoptes_cli.images.solve_batch import solve_fields
from panoptes_cli.quantities import get_quantity_value

if TYPE_CHECKING:
    import numpy as np
    from astropy.io.fits import Header
    from astropy.wcs import WCS

PathLike = str | os.PathLike


def _explicit_ext(args: tuple, kwargs: dict) -> bool:
    return bool(args) or any(key in kwargs for key in ('ext', 'extname', 'extver'))


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

    if not _explicit_ext(args, kwargs) and is_fpacked_name(fn):
        kwargs['ext'] = 1
    with reading(fn):
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

    with reading(fn):
        if _explicit_ext(args, kwargs):
            return fits.getheader(fn, *args, **kwargs)
        if is_fpacked_name(fn):
            return fits.getheader(fn, 1, **kwargs)
        with fits.open(fn, **kwargs) as hdul:
            return image_hdu(hdul).header.copy()


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
    from astropy.wcs import WCS, FITSFixedWarning

    header = getheader(fn, *args, **kwargs)
    with warnings.catch_warnings():
        # astropy reports every DATE-OBS it normalises; that is not news to the caller.
        warnings.simplefilter('ignore', FITSFixedWarning)
        return WCS(header)


def _extension_index(fn: PathLike, hdus: list, ext: int | str | None) -> int:
    """The index of the HDU ``ext`` names (a number or an EXTNAME), else the image's."""
    if ext is None:
        return image_extension(hdus)
    if isinstance(ext, int):
        if -len(hdus) <= ext < len(hdus):
            return ext % len(hdus)
    else:
        for n, hdu in enumerate(hdus):
            name = hdu.cards.get('EXTNAME', 'PRIMARY' if n == 0 else '')
            if str(name).upper() == ext.upper():
                return n
    raise KeyError(f'{os.fspath(fn)}: no extension {ext!r}')


def header_record(fn: PathLike, keywords: list[str] | None = None,
                  ext: int | str | None = None) -> dict:
    """Return the header of the image in a FITS file as a JSON-ready dict.

    The record is ``{'filename', 'hdu', 'header'}``: ``hdu`` is the index of
    the HDU read (the image's, as :func:`getheader` picks it, unless ``ext``
    is given as a number or an EXTNAME); ``header`` maps each keyword to its
    value, COMMENT and HISTORY to lists of lines. With ``keywords`` only
    those are given, None for the missing ones; a keyword with shell
    wildcards (``RA*``, ``DATE-??``) gives every keyword it matches, in the
    header's order.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> record = header_record(SHARED / 'solved.fits.fz', ['FIELD', 'EXPTIME', 'NOSUCH'])
    >>> record['filename'], record['hdu']
    ('.../solved.fits.fz', 1)
    >>> record['header']
    {'FIELD': 'KIC 8462852', 'EXPTIME': 120.4, 'NOSUCH': None}
    >>> header_record(SHARED / 'solved.fits.fz', ['DEC-*'])['header']
    {'DEC-MNT': 44.456875}

    Raises:
        NotAFitsFile: The file is missing, truncated or not FITS.
        KeyError: There is no such extension.
    """
    hdus = structure(fn)
    index = _extension_index(fn, hdus, ext)
    values = header_values(fn, hdus, index)
    if keywords:
        values = _chosen_keywords(values, keywords)
    return {'filename': os.fspath(fn), 'hdu': index, 'header': values}


def header_records(fn: PathLike, keywords: list[str] | None = None,
                   extensions: Iterable[int | str | None] = (None,)) -> list:
    """Return :func:`header_record` for each extension of one file, in order.

    A missing extension gives ``{'filename', 'hdu': ext, 'header': None}`` (as
    astropy's fitsheader shows it: a warning, not a failure); a file that
    cannot be read gives its exception in its place, so one task reports every
    HDU asked for.
    """
    results = []
    for ext in extensions:
        try:
            results.append(header_record(fn, keywords, ext))
        except KeyError:
            results.append({'filename': os.fspath(fn), 'hdu': ext, 'header': None})
        except (PanError, OSError, ValueError) as exc:
            results.append(exc)
    return results


def _chosen_keywords(values: dict, keywords: list[str]) -> dict:
    """The header values the keywords name: exact ones (None when missing), wildcards expanded."""
    import fnmatch

    chosen = {}
    for keyword in keywords:
        if any(char in keyword for char in '*?['):
            pattern = keyword.upper()
            chosen.update((key, value) for key, value in values.items()
                          if fnmatch.fnmatchcase(key, pattern))
        else:
            chosen[keyword] = values.get(keyword.upper())
    return chosen


def _card_value(value):
    """Make a header value astropy can store: quantities and times become plain values."""
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
            if is_fpacked_name(filename):
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
        with atomic_path(filename, overwrite, suffix=TEMP_SUFFIX, durable=True) as temp:
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


def observation_cards(info: Mapping) -> list[tuple[str, Any, str | None]]:
    """The (keyword, value, comment) cards :func:`update_observation_headers` writes for ``info``."""
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
    cards = observation_cards(info)
    if not cards:
        return

    def change(hdul):
        header = image_hdu(hdul).header
        for keyword, value, comment in cards:
            if comment is None:
                header[keyword] = value
            else:
                header[keyword] = (value, comment)

    rewrite(file_path, change)


__all__ = ['NotAFitsFile', 'fpack', 'funpack', 'get_solve_field', 'get_wcsinfo', 'getdata',
           'getheader', 'getval', 'getvalue', 'getwcs', 'header_record', 'header_records', 'solve_field',
           'solve_fields', 'update_observation_headers', 'write_fits']
