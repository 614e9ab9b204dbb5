"""Convert CR2 raw frames to FITS, PGM or a pretty JPG, one call for each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from panoptes_cli.error import IllegalValue
from panoptes_cli.images.cr2 import cr2_fits_path, cr2_to_fits, cr2_to_pgm, existing_file
from panoptes_cli.images.pretty import PrettyOptions, pretty_picture

PathLike = str | os.PathLike

CONVERSIONS = ('fits', 'pgm', 'jpg')


@dataclass
class ConvertOptions:
    """How to convert one CR2 file (see :func:`convert` and the conversions for each field)."""

    to: str = 'fits'
    output_dir: PathLike | None = None
    overwrite: bool = False
    remove_cr2: bool = False
    decoder: str = 'auto'
    dcraw: str = 'dcraw'
    exiftool: str = 'exiftool'
    timeout: float | None = None
    title: str | None = None
    headers: dict | None = None
    fits_headers: dict | None = None


def convert(cr2_fname: PathLike, to: str = 'fits', output_dir: PathLike | None = None,
            overwrite: bool = False, remove_cr2: bool = False, **kwargs) -> str:
    """Convert a CR2 file to FITS, PGM or a pretty JPG.

    The conversions are :func:`~panoptes_cli.images.cr2.cr2_to_fits`,
    :func:`~panoptes_cli.images.cr2.cr2_to_pgm` and
    :func:`~panoptes_cli.images.pretty.make_pretty_image`.

    The output is ``x.fits``, ``x.pgm`` or ``x.jpg`` for ``x.cr2``, beside it
    unless ``output_dir`` is given. The CR2 is removed, if asked, only once the
    output is complete.

    >>> import shutil
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
    >>> cr2 = shutil.copy(SHARED / 'synthetic.cr2', getfixture('tmp_path'))
    >>> os.path.basename(convert(cr2, to='jpg'))
    'synthetic.jpg'
    >>> os.path.basename(convert(cr2, to='fits', remove_cr2=True)), os.path.exists(cr2)
    ('synthetic.fits', False)

    Args:
        cr2_fname: The CR2 file.
        to: 'fits' (default), 'pgm' or 'jpg'.
        output_dir: Where to write the output (must exist), default beside the CR2.
        overwrite: Replace an existing output, default False.
        remove_cr2: Remove the CR2 after a successful conversion, default False.
        **kwargs: The other fields of :class:`ConvertOptions` (e.g. ``decoder``,
            ``headers``, ``title``).

    Returns:
        str: The output file.

    Raises:
        FileExistsError: The output exists and ``overwrite=False``.
        IllegalValue: ``to`` is not one of the above.
    """
    return convert_file(cr2_fname, ConvertOptions(to=to, output_dir=output_dir,
                                                  overwrite=overwrite, remove_cr2=remove_cr2,
                                                  **kwargs))


def convert_file(cr2_fname: PathLike, options: ConvertOptions) -> str:
    """Convert one CR2 file with typed options; see :func:`convert`.

    Made to be called for file after file: EXIF comes from the calling
    thread's long-running exiftool (:mod:`panoptes_cli.images.exiftool`).
    """
    to, overwrite = options.to, options.overwrite
    if to not in CONVERSIONS:
        raise IllegalValue(f"Unknown conversion {to!r}; use one of {', '.join(CONVERSIONS)}")
    path = existing_file(cr2_fname)
    target = cr2_fits_path(path, options.output_dir, suffix=f'.{to}')
    if options.output_dir is not None and not Path(options.output_dir).is_dir():
        raise FileNotFoundError(2, 'No such directory', os.fspath(options.output_dir))
    # Before any work: every conversion refuses to replace its output unless asked.
    if target.exists() and not overwrite:
        raise FileExistsError(17, 'File exists', os.fspath(target))
    if to == 'fits':
        return cr2_to_fits(path, target, overwrite=overwrite, headers=options.headers,
                           fits_headers=options.fits_headers, remove_cr2=options.remove_cr2,
                           decoder=options.decoder, dcraw=options.dcraw,
                           exiftool=options.exiftool, timeout=options.timeout,
                           keep_exiftool=True)
    if to == 'pgm':
        output = cr2_to_pgm(path, target, overwrite=overwrite, dcraw=options.dcraw,
                            timeout=options.timeout)
    else:
        output = pretty_picture(path, PrettyOptions(
            title=options.title, timeout=options.timeout or 15, img_type='.cr2',
            jpg_fname=target, overwrite=overwrite, decoder=options.decoder,
            keep_exiftool=True))
    if options.remove_cr2:
        path.unlink()
    return output
