"""Compress FITS images into fpack's tile-compressed ``.fz`` files and back.

cfitsio's ``fpack`` and ``funpack`` do the work when they are installed;
astropy's tile compression, which writes files the binaries read, when they
are not. Every output is checked to hold the same images as its input before
it replaces anything. The functions are documented under
:mod:`panoptes_cli.images.fits`, which re-exports them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from panoptes_cli import programs
from panoptes_cli.error import PanError
from panoptes_cli.files import atomic_path
from panoptes_cli.images._fits_io import TEMP_SUFFIX, PathLike, reading, structure
from panoptes_cli.images._fits_structure import image_signatures

if TYPE_CHECKING:
    from astropy.io.fits import Header


def _run_cfitsio_tool(program: str, options: list[str], source: Path, temp: Path) -> None:
    source_arg = os.fspath(source)
    if source_arg.startswith('-'):
        # Not an option, nor ("-") standard input.
        source_arg = f'./{source_arg}'
    completed = programs.run([program, *options, '-O', os.fspath(temp), source_arg],
                             capture_output=True, text=True)
    if completed.returncode != 0:
        why = programs.failure_message(completed.stderr + completed.stdout, completed.returncode)
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

    with reading(source), fits.open(source, do_not_scale_image_data=True) as hdul:
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

    with reading(source), fits.open(source, do_not_scale_image_data=True) as hdul:
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


def pack_into(source: Path, temp: Path, unpack: bool, hdus: list) -> None:
    """Compress (or decompress) ``source`` into the new file ``temp`` and check the result.

    ``hdus`` is the input's structure, as :func:`structure` read it.
    """
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
    written = structure(temp, what=_packed_name(source, unpack))
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
    >>> from panoptes_cli.images.fits import getval
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
    hdus = structure(source)
    compressed = any(hdu.compressed for hdu in hdus)
    if unpack and not compressed:
        raise PanError(f'{source}: cannot unpack (no compressed image in it)')
    if not unpack and compressed:
        raise PanError(f'{source}: already packed (it holds a compressed image)')

    with atomic_path(target, overwrite, suffix=TEMP_SUFFIX, durable=True) as temp:
        pack_into(source, temp, unpack, hdus)
    if not keep_original:
        source.unlink()
    return os.fspath(target)


def funpack(*args, **kwargs) -> str:
    """Decompress an fpacked FITS file: :func:`fpack` with ``unpack=True``.

    >>> import shutil
    >>> from panoptes_cli.images.fits import getwcs
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
