"""Images from PANOPTES cameras: crops, saturation masks, pretty JPGs and timelapses.

The submodules handle the Bayer pattern (:mod:`~panoptes_cli.images.bayer`),
Canon raw files (:mod:`~panoptes_cli.images.cr2`), FITS files
(:mod:`~panoptes_cli.images.fits`), focus metrics
(:mod:`~panoptes_cli.images.focus`), plots (:mod:`~panoptes_cli.images.plot`),
pretty pictures (:mod:`~panoptes_cli.images.pretty`) and timelapses
(:mod:`~panoptes_cli.images.timelapse`). This package is their public face, as
the manual documents it: the submodules never import it.

Importing this package is cheap: numpy, astropy, matplotlib and loguru load inside
the functions that use them.

>>> import numpy as np
>>> from panoptes_cli.images import crop_data, mask_saturated
>>> crop_data(np.arange(100).reshape(10, 10), box_width=2)
array([[44, 45],
       [54, 55]])
>>> mask_saturated(np.array([10, 250, 255], dtype=np.uint8)).mask
array([False,  True,  True])
"""

from __future__ import annotations

import contextlib

from panoptes_cli.error import CheckFailed, IllegalValue
from panoptes_cli.images.pretty import make_pretty_image, pretty_image_path
from panoptes_cli.images.reading import read_image
from panoptes_cli.images.timelapse import make_timelapse, timelapse_frames, timelapse_path
from panoptes_cli.programs import find_program


def crop_data(data, box_width: int = 200, center=None, data_only: bool = True, wcs=None,
              **kwargs):
    """Return a cropped portion of the image.

    The box is centred on the middle of the data unless ``center`` is given.

    >>> import numpy as np
    >>> from panoptes_cli.images import crop_data
    >>> data = np.arange(36).reshape(6, 6)
    >>> crop_data(data, box_width=2)
    array([[14, 15],
           [20, 21]])
    >>> crop_data(data, box_width=3, center=(1, 1))  # (x, y)
    array([[ 0,  1,  2],
           [ 6,  7,  8],
           [12, 13, 14]])
    >>> cutout = crop_data(data, box_width=2, data_only=False)
    >>> cutout.position_original
    (3, 3)
    >>> crop_data(data, box_width=7)
    Traceback (most recent call last):
    ...
    panoptes_cli.error.CheckFailed: CheckFailed: Can't crop a 7 pixel box from data of shape (6, 6)

    Args:
        data (numpy.ndarray): Array of data.
        box_width (int, optional): Side of the square cut out, in pixels, default 200.
        center (tuple(int, int), optional): Crop around this (x, y) position, default the
            image center.
        data_only (bool, optional): Return only the pixels (default); with False, the
            ``Cutout2D`` object.
        wcs (None or astropy.wcs.WCS, optional): A WCS to cut along with the pixels.
        **kwargs: Passed to ``astropy.nddata.Cutout2D`` (e.g. ``mode``).

    Returns:
        A cropped version of the data if ``data_only=True``, otherwise an
        ``astropy.nddata.Cutout2D`` object.

    Raises:
        CheckFailed: The box is larger than the data (an IllegalValue, and an
            AssertionError as 0.2.29's assert was; it checked only the rows).
    """
    from astropy.nddata import Cutout2D

    from panoptes_cli.logging import logger

    rows, cols = data.shape[-2:]
    if box_width > rows or box_width > cols:
        raise CheckFailed(f"Can't crop a {box_width} pixel box from data of shape {data.shape}")
    if center is None:
        position = (cols // 2, rows // 2)
    else:
        position = (int(center[0]), int(center[1]))
    logger.debug(f'Cropping a {box_width} pixel box around (x, y) = {position}')
    cutout = Cutout2D(data, position, box_width, wcs=wcs, **kwargs)
    return cutout.data if data_only else cutout


def mask_saturated(data, saturation_level=None, threshold: float = 0.9, bit_depth=None,
                   dtype=None):
    """Return the data as a masked array hiding the saturated pixels.

    >>> import numpy as np
    >>> from astropy import units as u
    >>> from panoptes_cli.images import mask_saturated
    >>> data = np.array([0, 1000, 3700, 4095], dtype=np.uint16)
    >>> mask_saturated(data, bit_depth=12).mask
    array([False, False,  True,  True])
    >>> mask_saturated(data, bit_depth=12 * u.bit / u.pixel).mask
    array([False, False,  True,  True])
    >>> mask_saturated(data, saturation_level=1000).mask
    array([False, False,  True,  True])
    >>> mask_saturated(data).mask  # 90% of the uint16 maximum
    array([False, False, False, False])
    >>> mask_saturated(data, saturation_level=500, dtype=np.float32).dtype
    dtype('float32')
    >>> mask_saturated(data.astype(float))
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: Neither saturation_level or bit_depth given, and data is not an integer type. Cannot determine correct saturation level.
    >>> mask_saturated(data, bit_depth=12 * u.m)
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: bit_depth must have units of bits or bits/pixel, got <Quantity 12. m>

    Args:
        data (array_like): The pixels.
        saturation_level (scalar, optional): Mask pixels at or above this value; when
            absent, ``threshold`` times the largest value a pixel can hold.
        threshold (float, optional): That fraction, default 0.9.
        bit_depth (astropy.units.Quantity or int, optional): Bits per pixel the camera
            really uses, so the largest value is ``2**bit_depth - 1``; by default the
            data's integer type decides.
        dtype (numpy.dtype, optional): Type of the returned masked array; the data's
            own by default.

    Returns:
        numpy.ma.MaskedArray: The masked numpy array.

    Raises:
        IllegalValue: ``bit_depth`` is a Quantity whose units are neither bits nor
            bits/pixel, or neither ``saturation_level`` nor ``bit_depth`` is given and
            the data is not of an integer type.
    """
    import numpy as np

    from panoptes_cli.logging import logger

    data = np.asanyarray(data)
    # ``is None``: a saturation level of 0 is a level (the manual's ``if not`` ignored it).
    if saturation_level is None:
        if bit_depth is not None:
            saturation_level = threshold * (2 ** _bits(bit_depth) - 1)
        else:
            try:
                saturation_level = threshold * np.iinfo(data.dtype).max
            except ValueError:
                raise IllegalValue(
                    'Neither saturation_level or bit_depth given, and data is not an integer '
                    'type. Cannot determine correct saturation level.') from None
    logger.debug(f'Masking image using saturation level {saturation_level!r}')
    return np.ma.array(data, mask=(data > saturation_level), dtype=dtype)


def _bits(bit_depth) -> int:
    from astropy import units as u

    if not isinstance(bit_depth, u.Quantity):
        return int(bit_depth)
    for unit in (u.bit, u.bit / u.pixel):
        with contextlib.suppress(u.UnitConversionError):
            return int(bit_depth.to_value(unit))
    raise IllegalValue(f'bit_depth must have units of bits or bits/pixel, got {bit_depth!r}')


__all__ = ['crop_data', 'find_program', 'mask_saturated', 'make_pretty_image', 'make_timelapse',
           'pretty_image_path', 'read_image', 'timelapse_path', 'timelapse_frames']
