"""FITS file access shared by the readers, the packer and the plate solver.

Each caller of a FITS file meets the same failures (missing, cut short, not
FITS at all) and the same layout question (is the image in the primary HDU
or, fpacked, in extension 1?); the answers live here once. astropy is
imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings

from panoptes_cli.error import MissingFile, NotAFitsFile, PanError
from panoptes_cli.files import atomic_path
from panoptes_cli.images._fits_header import parse
from panoptes_cli.images._fits_structure import StructureError, image_signatures, walk

PathLike = str | os.PathLike

# Temporary files end in .part, which no FITS tool mistakes for a format (cfitsio, writing
# fpack's output, would gzip a name ending in .gz).
TEMP_SUFFIX = '.part'

_TRUNCATED = re.compile(r'actual file length \((\d+)\) is smaller than the expected size \((\d+)\)')


class MissingFitsFile(NotAFitsFile, MissingFile):
    """No file at that path (a FileNotFoundError; an AssertionError as 0.2.29's checks were)."""


class FitsPathIsADirectory(NotAFitsFile, IsADirectoryError):
    """The path names a directory."""


class UnreadableFile(PanError, PermissionError):
    """The file is there but this user may not read it."""


def not_fits_error(fn: PathLike, exc: BaseException, why: str | None = None) -> PanError:
    """The error for ``fn`` failing to read as FITS because of ``exc``, of the matching class."""
    if isinstance(exc, PermissionError):
        return UnreadableFile(f'{os.fspath(fn)}: cannot read ({exc.strerror.lower()})')
    kind = (MissingFitsFile if isinstance(exc, FileNotFoundError)
            else FitsPathIsADirectory if isinstance(exc, IsADirectoryError) else NotAFitsFile)
    return kind(f'{os.fspath(fn)}: not a FITS file ({why or failure_reason(exc)})')


def is_fpacked_name(fn: PathLike) -> bool:
    """True for a name ending in ``.fz``, fpack's."""
    return os.fspath(fn).endswith('.fz')


def failure_reason(exc: BaseException) -> str:
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
def reading(fn: PathLike):
    """Turn every way a file can fail to be FITS into one :class:`NotAFitsFile`."""
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
    except (OSError, AstropyUserWarning) as exc:
        if isinstance(exc, PanError):
            raise
        raise not_fits_error(fn, exc) from exc


def image_hdu(hdul):
    """Return the HDU holding the image: the primary one unless it is empty."""
    primary = hdul[0]
    if primary.header.get('NAXIS', 0) == 0 and len(hdul) > 1:
        return hdul[1]
    return primary


def _json_value(value):
    """A header value as JSON can hold it: astropy's "no value" becomes None."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, complex):
        return [value.real, value.imag]
    return None


def _astropy_header_values(fn: PathLike, index: int) -> dict:
    """A header's values as astropy reads them, for the headers the fast reader declines."""
    from astropy.io import fits

    values = {}
    with reading(fn), fits.open(fn) as hdul:
        for card in hdul[index].header.cards:
            if card.keyword in ('COMMENT', 'HISTORY'):
                values.setdefault(card.keyword, []).append(str(card.value))
            elif card.keyword:
                values[card.keyword] = _json_value(card.value)
    return values


def header_values(fn: PathLike, hdus: list, index: int) -> dict:
    """The keywords and values of HDU ``index`` of a walked file, without astropy if it can."""
    hdu = hdus[index]
    values = parse(hdu.header, compressed=hdu.compressed)
    return values if values is not None else _astropy_header_values(fn, index)


def rewrite(fits_fname: PathLike, change) -> None:
    """Apply ``change(hdul)`` to a FITS file and write the result atomically over it."""
    from astropy.io import fits

    with reading(fits_fname):
        hdul = fits.open(fits_fname, do_not_scale_image_data=True)
    with hdul:
        change(hdul)
        with atomic_path(fits_fname, suffix=TEMP_SUFFIX, durable=True) as temp:
            hdul.writeto(temp, checksum=has_checksums(hdul))


def has_checksums(hdul) -> bool:
    return any('CHECKSUM' in hdu.header for hdu in hdul)


def structure(path: PathLike, what: str | None = None):
    """Walk a FITS file's HDUs; a cut or foreign file raises NotAFitsFile for ``what``."""
    try:
        return walk(path)
    except (FileNotFoundError, IsADirectoryError, StructureError) as exc:
        why = str(exc) if isinstance(exc, StructureError) else None
        raise not_fits_error(what or path, exc, why) from exc


def image_extension(hdus: list) -> int:
    """The index of the first HDU holding an image (0 for a plain file, 1 for an fpacked one)."""
    return next((index for index, hdu in enumerate(hdus) if hdu.is_image), 0)


def image_size(hdus: list) -> tuple[int, int]:
    signatures = image_signatures(hdus)
    axes = signatures[0][1] if signatures else ()
    return (axes[0], axes[1]) if len(axes) >= 2 else (0, 0)
