"""Convert CR2 raw frames to FITS, PGM or a pretty JPG, one call for each."""

from __future__ import annotations

import os
from pathlib import Path

from panoptes_cli.error import IllegalValue
from panoptes_cli.images.cr2 import existing_file, cr2_fits_path, cr2_to_fits, cr2_to_pgm
from panoptes_cli.images.pretty import make_pretty_image

PathLike = str | os.PathLike

CONVERSIONS = ('fits', 'pgm', 'jpg')


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
        **kwargs: Passed to the conversion (e.g. ``decoder``, ``headers``, ``title``).

    Returns:
        str: The output file.

    Raises:
        FileExistsError: The output exists and ``overwrite=False``.
        IllegalValue: ``to`` is not one of the above.
    """
    if to not in CONVERSIONS:
        raise IllegalValue(f"Unknown conversion {to!r}; use one of {', '.join(CONVERSIONS)}")
    path = existing_file(cr2_fname)
    target = cr2_fits_path(path, output_dir, suffix=f'.{to}')
    if output_dir is not None and not Path(output_dir).is_dir():
        raise FileNotFoundError(2, 'No such directory', os.fspath(output_dir))
    # Before any work: every conversion refuses to replace its output unless asked.
    if target.exists() and not overwrite:
        raise FileExistsError(17, 'File exists', os.fspath(target))
    if to == 'fits':
        return cr2_to_fits(path, target, overwrite=overwrite, remove_cr2=remove_cr2, **kwargs)
    if to == 'pgm':
        output = cr2_to_pgm(path, target, overwrite=overwrite, dcraw=kwargs.get('dcraw', 'dcraw'),
                            timeout=kwargs.get('timeout'))
    else:
        output = make_pretty_image(path, title=kwargs.get('title'),
                                   timeout=kwargs.get('timeout') or 15, img_type='.cr2',
                                   jpg_fname=target, overwrite=overwrite,
                                   decoder=kwargs.get('decoder', 'auto'))
    if remove_cr2:
        path.unlink()
    return output
