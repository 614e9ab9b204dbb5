"""Work with the RGGB Bayer pattern of PANOPTES DSLR frames: colours, masks, stamps, background.

Index conventions (numpy order, row ``i`` = y, column ``j`` = x, origin in the
upper-left corner of the array):

======  =========  ==========
colour  row (y)    column (x)
======  =========  ==========
R       odd i      even j
G1      odd i      odd j
G2      even i     even j
B       even i     odd j
======  =========  ==========

so a super-pixel as it sits in a numpy array is::

    G2 B
    R  G1

>>> import numpy as np
>>> from panoptes_cli.images import bayer
>>> [bayer.get_pixel_color(x, y) for y in range(2) for x in range(2)]
['G2', 'B', 'R', 'G1']
"""

from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from panoptes_cli.error import IllegalValue
from panoptes_cli.images.fits import write_fits
from panoptes_cli.images.reading import read_image


class BadDataShape(IllegalValue, TypeError):
    """Data of a shape the Bayer functions cannot split (a TypeError too, as in 0.2.29)."""


class BadStampSize(IllegalValue, RuntimeError):
    """A stamp size get_stamp_slice cannot cut (a RuntimeError too, as in 0.2.29)."""


# The RGGB layout: where each colour sits in a super-pixel, as (row offset, column offset).
OFFSETS = {'R': (1, 0), 'G1': (1, 1), 'G2': (0, 0), 'B': (0, 1)}
_COLOUR_AT = {offset: colour for colour, offset in OFFSETS.items()}


def colour_planes(data) -> dict:
    """Each colour's pixels of a raw frame (or a stack of them) as its own half-size plane.

    The planes are views of ``data``, not copies.

    >>> import numpy as np
    >>> planes = colour_planes(np.arange(16).reshape(4, 4))
    >>> planes['R'], planes['B']
    (array([[ 4,  6],
           [12, 14]]), array([[ 1,  3],
           [ 9, 11]]))
    """
    return {colour: data[..., row::2, col::2] for colour, (row, col) in OFFSETS.items()}


def get_rgb_data(data, separate_green: bool = False) -> np.ma.MaskedArray:
    """Return one masked channel per colour of a Bayer frame (or a stack of frames).

    ``data`` can be a 2D (``H x W``) or 3D (``N x H x W``) array. The result is a
    masked array of shape ``3 x H x W`` (or ``3 x N x H x W``), in R, G, B order,
    where each channel keeps its own pixels and masks all the others. With
    ``separate_green=True`` there are four channels: R, G1, G2, B.

    See the module docstring for the RGGB pattern (and :func:`get_rgb_masks`).

    >>> import numpy as np
    >>> from panoptes_cli.images.bayer import get_rgb_data
    >>> data = np.arange(16).reshape(4, 4)
    >>> rgb = get_rgb_data(data)
    >>> rgb.shape
    (3, 4, 4)
    >>> rgb[0].compressed()  # red: odd rows, even columns
    array([ 4,  6, 12, 14])
    >>> rgb[1].compressed()  # both greens
    array([ 0,  2,  5,  7,  8, 10, 13, 15])
    >>> rgb[2].compressed()  # blue: even rows, odd columns
    array([ 1,  3,  9, 11])
    >>> get_rgb_data(np.stack([data, data])).shape
    (3, 2, 4, 4)
    >>> get_rgb_data(data, separate_green=True).shape
    (4, 4, 4)

    Args:
        data (numpy.ndarray): The image (or a stack of images).
        separate_green (bool, optional): Return G1 and G2 as separate channels, default False.

    Returns:
        numpy.ma.MaskedArray: The channels, each masked where the pixel is of another colour.
    """
    data = np.asarray(data)
    masks = get_rgb_masks(data, separate_green=separate_green)
    stacked = np.broadcast_to(data, masks.shape).copy()
    return np.ma.MaskedArray(stacked, mask=masks, copy=False)


def get_rgb_masks(data, separate_green: bool = False) -> np.ndarray:
    """Return the masks that pick out each Bayer colour of ``data``.

    Each mask is ``True`` where the pixel is *not* of that colour, which is
    what :class:`numpy.ma.MaskedArray` expects, so ``np.ma.array(data,
    mask=masks[0])`` leaves only the red pixels. See the module docstring for
    the pattern.

    >>> import numpy as np
    >>> from panoptes_cli.images.bayer import get_rgb_masks
    >>> r_mask, g_mask, b_mask = get_rgb_masks(np.zeros((4, 4)))
    >>> (~r_mask).astype(int)
    array([[0, 0, 0, 0],
           [1, 0, 1, 0],
           [0, 0, 0, 0],
           [1, 0, 1, 0]])
    >>> (~g_mask).astype(int)
    array([[1, 0, 1, 0],
           [0, 1, 0, 1],
           [1, 0, 1, 0],
           [0, 1, 0, 1]])
    >>> len(get_rgb_masks(np.zeros((4, 4)), separate_green=True))
    4

    Args:
        data (numpy.ndarray): An array of data representing an image (or a stack of them).
        separate_green (bool, optional): Give G1 and G2 a mask each rather than one for
            both greens, default False.

    Returns:
        numpy.ndarray: A stack of 3 (R, G, B) or 4 (R, G1, G2, B) boolean masks, each
        the shape of ``data``; it unpacks like the manual's tuple.
    """
    shape = np.shape(data)
    if len(shape) not in (2, 3):
        raise BadDataShape(f'Bayer masks need 2D data or a stack of 2D frames (3D), got shape {shape}')
    colours = ('R', 'G1', 'G2', 'B')
    masks = np.ones((4, *shape), dtype=bool)
    for index, colour in enumerate(colours):
        row, col = OFFSETS[colour]
        masks[index, ..., row::2, col::2] = False
    if separate_green:
        return masks
    green = masks[1] & masks[2]
    return np.stack([masks[0], green, masks[3]])


def get_pixel_color(x, y) -> str:
    """Return the Bayer colour ('R', 'G1', 'G2' or 'B') at column ``x``, row ``y`` (from 0).

    See the module docstring for the RGGB pattern.

    >>> from panoptes_cli.images.bayer import get_pixel_color
    >>> get_pixel_color(0, 0), get_pixel_color(1, 0), get_pixel_color(0, 1), get_pixel_color(1, 1)
    ('G2', 'B', 'R', 'G1')
    >>> get_pixel_color(5207, 3475)
    'G1'

    Returns:
        str: 'R', 'G1', 'G2' or 'B'.
    """
    return _COLOUR_AT[(int(y) % 2, int(x) % 2)]


def _nearest_pixel(value) -> int:
    # Decimal rounds exactly half-way positions the same way every time
    # (banker's rounding), where float arithmetic could go either side.
    return int(Decimal(float(value)).to_integral_value(rounding=ROUND_HALF_EVEN))


def get_stamp_slice(x, y, stamp_size=(14, 14), ignore_superpixel: bool = False) -> tuple:
    """Return the (rows, columns) slices of a stamp around pixel ``x, y`` that starts on a G2.

    Every stamp cut this way has the same Bayer layout, because its first pixel
    is the first (G2) pixel of a super-pixel. The price: ``x, y`` is only near the
    middle. The stamp centres the super-pixel holding it and has the same number
    of whole super-pixels on each side, so a side is 2 + 4k pixels (6, 10, 14...).

    >>> import numpy as np
    >>> from panoptes_cli.images import bayer
    >>> # Make a super-pixel as represented in numpy (see full stamp below).
    >>> superpixel = np.array(['G2', 'B', 'R', 'G1']).reshape(2, 2)
    >>> superpixel
    array([['G2', 'B'],
           ['R', 'G1']], dtype='<U2')
    >>> # Tile it into a 5x5 grid of super-pixels, i.e. a 10x10 stamp.
    >>> stamp0 = np.tile(superpixel, (5, 5))
    >>> stamp0
    array([['G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1'],
           ['G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1'],
           ['G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1'],
           ['G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1'],
           ['G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1', 'R', 'G1']],
          dtype='<U2')
    >>> stamp1 = np.arange(100).reshape(10, 10)
    >>> stamp1
    array([[ 0,  1,  2,  3,  4,  5,  6,  7,  8,  9],
           [10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
           [20, 21, 22, 23, 24, 25, 26, 27, 28, 29],
           [30, 31, 32, 33, 34, 35, 36, 37, 38, 39],
           [40, 41, 42, 43, 44, 45, 46, 47, 48, 49],
           [50, 51, 52, 53, 54, 55, 56, 57, 58, 59],
           [60, 61, 62, 63, 64, 65, 66, 67, 68, 69],
           [70, 71, 72, 73, 74, 75, 76, 77, 78, 79],
           [80, 81, 82, 83, 84, 85, 86, 87, 88, 89],
           [90, 91, 92, 93, 94, 95, 96, 97, 98, 99]])
    >>> x = 7
    >>> y = 5
    >>> pixel_index = (y, x)  # y=rows, x=columns
    >>> str(stamp0[pixel_index])
    'G1'
    >>> int(stamp1[pixel_index])
    57
    >>> slice0 = bayer.get_stamp_slice(x, y, stamp_size=(6, 6))
    >>> slice0
    (slice(2, 8, None), slice(4, 10, None))
    >>> stamp0[slice0]
    array([['G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1'],
           ['G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1'],
           ['G2', 'B', 'G2', 'B', 'G2', 'B'],
           ['R', 'G1', 'R', 'G1', 'R', 'G1']], dtype='<U2')
    >>> stamp1[slice0]
    array([[24, 25, 26, 27, 28, 29],
           [34, 35, 36, 37, 38, 39],
           [44, 45, 46, 47, 48, 49],
           [54, 55, 56, 57, 58, 59],
           [64, 65, 66, 67, 68, 69],
           [74, 75, 76, 77, 78, 79]])

    Pixel 57, the one asked for, sits in the middle super-pixel of that stamp.

    With ``ignore_superpixel=True`` any size goes (odd ones too) and the pixel is
    exactly in the middle, but the stamp's Bayer layout then depends on where it is.

    >>> slice1 = bayer.get_stamp_slice(x, y, stamp_size=(5, 5), ignore_superpixel=True)
    >>> slice1
    (slice(3, 8, None), slice(5, 10, None))
    >>> stamp0[slice1]
    array([['G1', 'R', 'G1', 'R', 'G1'],
           ['B', 'G2', 'B', 'G2', 'B'],
           ['G1', 'R', 'G1', 'R', 'G1'],
           ['B', 'G2', 'B', 'G2', 'B'],
           ['G1', 'R', 'G1', 'R', 'G1']], dtype='<U2')
    >>> stamp1[slice1]
    array([[35, 36, 37, 38, 39],
           [45, 46, 47, 48, 49],
           [55, 56, 57, 58, 59],
           [65, 66, 67, 68, 69],
           [75, 76, 77, 78, 79]])

    A stamp that would start before the first row or column is moved inward by
    whole super-pixels (the manual's version returned a negative start, which
    numpy reads as counting from the far edge: an empty or wrong stamp):

    >>> bayer.get_stamp_slice(1, 1, stamp_size=(6, 6))
    (slice(0, 6, None), slice(0, 6, None))

    Args:
        x (float): X pixel position (column).
        y (float): Y pixel position (row).
        stamp_size (tuple, optional): The size of the cutout as (height, width), default (14, 14).
        ignore_superpixel (bool): Centre the pixel exactly and take any size, default False.

    Returns:
        tuple(slice, slice): The (row, column) slices for the data.

    Raises:
        BadStampSize: A side is not 2 + 4k pixels (unless ``ignore_superpixel``),
            or is smaller than 1.
    """
    height, width = (int(side) for side in stamp_size)
    x = _nearest_pixel(x)
    y = _nearest_pixel(y)
    if min(height, width) < 1:
        raise BadStampSize(f'Invalid stamp size {tuple(stamp_size)}: sides must be positive')

    if ignore_superpixel:
        row_start = y - height // 2
        col_start = x - width // 2
    else:
        for side in (height, width):
            if side % 4 != 2:
                raise BadStampSize(
                    f'Invalid stamp size {side}: each side must hold the center super-pixel '
                    'and whole super-pixels around it, i.e. 6, 10, 14, 18...')
        row_start = (y - y % 2) - (height - 2) // 2
        col_start = (x - x % 2) - (width - 2) // 2

    # A shift by an even number of pixels keeps the Bayer pattern of the stamp.
    if row_start < 0:
        row_start = 0 if ignore_superpixel else row_start % 2
    if col_start < 0:
        col_start = 0 if ignore_superpixel else col_start % 2
    return (slice(row_start, row_start + height), slice(col_start, col_start + width))


def _channel_planes(data: np.ndarray) -> dict:
    """Split a full frame (even sides) into each channel's own sub-sampled plane.

    Red and blue are ``H/2 x W/2``. Green is ``H x W/2``: row ``i`` of the
    plane holds the green pixels of row ``i`` of the frame (G2 on even rows,
    G1 on odd rows), so a box of ``by x bx`` frame pixels is a box of
    ``by x bx/2`` plane pixels holding exactly the same green pixels.
    """
    height, width = data.shape
    planes = colour_planes(data)
    green = np.empty((height, width // 2), dtype=data.dtype)
    for colour in ('G1', 'G2'):
        green[OFFSETS[colour][0]::2] = planes[colour]
    return {'R': planes['R'], 'G': green, 'B': planes['B']}


def _fill_frame(full: np.ndarray, colour: str, plane: np.ndarray) -> None:
    """Put a channel's plane back at its pixels of the full frame."""
    if colour == 'G':
        for green in ('G1', 'G2'):
            row, col = OFFSETS[green]
            full[row::2, col::2] = plane[row::2]
    else:
        row, col = OFFSETS[colour]
        full[row::2, col::2] = plane


def _background_estimators() -> dict:
    from photutils.background import (
        MeanBackground, MedianBackground, MMMBackground, SExtractorBackground)

    return {'mean': MeanBackground, 'median': MedianBackground,
            'mmm': MMMBackground, 'sexb': SExtractorBackground}


def get_rgb_background(fits_fn, box_size=(84, 84), filter_size=(3, 3), camera_bias=0,
                       estimator: str = 'mean', interpolator: str = 'zoom', sigma=5, iters=5,
                       exclude_percentile=100, return_separate: bool = False, *args, **kwargs):
    """Estimate the sky background of each colour channel with photutils' ``Background2D``.

    The options are ``Background2D``'s (see photutils' documentation on background
    estimation), counted in full-frame pixels.

    Each channel is estimated on its own sub-sampled plane (red and blue
    ``H/2 x W/2``, green ``H x W/2``) with the box halved along the sub-sampled
    axes, so every box holds exactly the pixels of that colour a ``box_size``
    box of the full frame holds. That gives the background the manual's masked
    full-frame method gives, several times faster. ``exclude_percentile`` is
    therefore the percentage of a channel's own pixels in a box that may be
    masked, as documented (the manual's version counted the other colours'
    pixels as masked too).

    >>> from pathlib import Path
    >>> from panoptes_cli.images import fits as fits_utils
    >>> fits_fn = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'solved.fits.fz'
    >>> data = fits_utils.getdata(fits_fn)
    >>> round(float(data.mean()), 3)
    2236.817
    >>> rgb_back = get_rgb_background(fits_fn)
    >>> round(float(rgb_back.mean()))
    2202
    >>> rgb_backs = get_rgb_background(fits_fn, return_separate=True)
    >>> type(rgb_backs[0])
    <class 'photutils.background.background_2d.Background2D'>
    >>> {color: round(float(bkg.background_rms_median), 1) for color, bkg in zip('rgb', rgb_backs)}
    {'r': 20.6, 'g': 32.8, 'b': 23.8}

    Args:
        fits_fn (str or numpy.ndarray): The filename of the FITS image, or its data.
        box_size (tuple, optional): The box size (rows, columns) in full-frame pixels over
            which to compute the 2D background, default (84, 84).
        filter_size (tuple, optional): The filter size (in boxes) for determining the
            median, default (3, 3).
        camera_bias (int, optional): The camera's bias level, subtracted first; with the
            default 0 the bias stays in the background.
        estimator (str, optional): One of 'mean' (default), 'median', 'mmm', 'sexb'.
        interpolator (str, optional): 'zoom' (cubic spline, the default and only choice).
        sigma (int, optional): Clip values this many standard deviations out, default 5.
        iters (int, optional): Clipping rounds, default 5.
        exclude_percentile (int, optional): The percentage of a channel's pixels in a box
            that can be masked, default 100 (i.e. all).
        return_separate (bool, optional): Return the three ``Background2D`` objects
            (R, G, B, each on its channel's plane) instead of one array, default False.
        *args: Ignored (kept for the manual's signature).
        **kwargs: Passed on to ``photutils.background.Background2D``.

    Returns:
        numpy.ndarray or list: The full-frame background (each pixel gets its own
        channel's background), or the list of ``Background2D`` objects in RGB order.

    Raises:
        IllegalValue: An unknown estimator or interpolator, or data that is not 2D.
    """
    backgrounds, boxes, shape = _channel_backgrounds(
        fits_fn, box_size=box_size, filter_size=filter_size, camera_bias=camera_bias,
        estimator=estimator, interpolator=interpolator, sigma=sigma, iters=iters,
        exclude_percentile=exclude_percentile, **kwargs)
    if return_separate:
        return backgrounds
    return _full_background(backgrounds, boxes, shape)


def _channel_backgrounds(fits_fn, box_size, filter_size, camera_bias, estimator, interpolator,
                         sigma, iters, exclude_percentile, **kwargs):
    """Run Background2D on each channel's plane; return them, their boxes and the frame shape."""
    from astropy.stats import SigmaClip
    from photutils.background import Background2D

    estimators = _background_estimators()
    try:
        bkg_estimator = estimators[estimator]()
    except KeyError:
        raise IllegalValue(f'Unknown background estimator {estimator!r}; '
                           f'use one of {", ".join(estimators)}') from None
    # Spline zoom is Background2D's own default (photutils 3 deprecates
    # passing an interpolator object), so 'zoom' is simply not passed on.
    if interpolator != 'zoom':
        raise IllegalValue(f"Unknown background interpolator {interpolator!r}; use 'zoom'")

    data = _load_frame(fits_fn)
    if data.ndim != 2 or min(data.shape) < 2:
        raise IllegalValue(f'Background needs a 2D frame, got shape {data.shape}')
    # float32 keeps 24 bits, plenty for 14-bit counts, and halves the memory
    # traffic; subtracting the bias as a float also avoids the unsigned
    # wrap-around the manual's version had (uint16 - bias).
    full_height, full_width = data.shape
    height, width = full_height - full_height % 2, full_width - full_width % 2
    frame = data[:height, :width].astype(np.float32)
    if camera_bias:
        frame -= np.float32(camera_bias)

    box_rows, box_cols = (int(side) for side in np.broadcast_to(box_size, 2))
    half_rows, half_cols = max(1, box_rows // 2), max(1, box_cols // 2)
    boxes = {'R': (half_rows, half_cols), 'G': (box_rows, half_cols), 'B': (half_rows, half_cols)}

    backgrounds = []
    for colour, plane in _channel_planes(frame).items():
        backgrounds.append(Background2D(
            plane, boxes[colour], filter_size=filter_size,
            sigma_clip=SigmaClip(sigma=sigma, maxiters=iters), bkg_estimator=bkg_estimator,
            exclude_percentile=exclude_percentile, **kwargs))
    return backgrounds, boxes, (full_height, full_width)


def _full_background(backgrounds: list, boxes: dict, shape: tuple) -> np.ndarray:
    """Assemble the full-frame background: each pixel gets its own channel's background."""
    full_height, full_width = shape
    height, width = full_height - full_height % 2, full_width - full_width % 2
    full = np.empty(shape, dtype=np.float64)
    for colour, bkg in zip('RGB', backgrounds):
        plane_shape = (height // 2 if colour != 'G' else height, width // 2)
        _fill_frame(full[:height, :width], colour,
                    _spline_zoom(bkg.background_mesh, boxes[colour], plane_shape))
    # An odd last row or column takes the background of the same colour two pixels in.
    if full_height != height:
        full[-1] = full[-3]
    if full_width != width:
        full[:, -1] = full[:, -3]
    return full


def background_summary(fits_fn, output=None, overwrite: bool = False, **kwargs) -> dict:
    """Return each channel's background level and RMS (medians over the frame) and their mean.

    With ``output``, the full-frame background (as :func:`get_rgb_background`
    returns it) is also written there as FITS (atomically).

    >>> from pathlib import Path
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> summary = background_summary(SHARED / 'solved.fits.fz')
    >>> {colour: round(values['rms'], 1) for colour, values in summary['channels'].items()}
    {'r': 20.6, 'g': 32.8, 'b': 23.8}
    >>> round(summary['channels']['g']['level'], 1)
    2240.7

    Args:
        fits_fn: A FITS file (or CR2 raw frame), or the image data.
        output: Where to write the background FITS, default nowhere.
        overwrite: Replace an existing ``output``, default False.
        **kwargs: The options of :func:`get_rgb_background`.

    Returns:
        dict: ``channels`` (``r``, ``g``, ``b``: ``level``, ``rms``), ``mean`` (of the
        full background) and ``output`` (the FITS written, or None).
    """
    options = dict(box_size=(84, 84), filter_size=(3, 3), camera_bias=0, estimator='mean',
                   interpolator='zoom', sigma=5, iters=5, exclude_percentile=100)
    options.update(kwargs)
    backgrounds, boxes, shape = _channel_backgrounds(fits_fn, **options)
    full = _full_background(backgrounds, boxes, shape)
    if output is not None:
        write_fits(full.astype(np.float32), {'BUNIT': ('adu', 'RGB background, per channel'),
                                             'BKGBOX': (str(tuple(options['box_size'])),
                                                        'Background box (full-frame pixels)')},
                   output, overwrite=overwrite)
    return {
        'channels': {colour: {'level': float(bkg.background_median),
                              'rms': float(bkg.background_rms_median)}
                     for colour, bkg in zip('rgb', backgrounds)},
        'mean': float(full.mean()),
        'output': None if output is None else str(output),
    }


def _zoom_matrix(n_mesh: int, factor: int, n_out: int) -> np.ndarray:
    """The ``n_out x n_mesh`` matrix of a 1D cubic-spline zoom by ``factor`` (grid mode)."""
    from scipy.ndimage import zoom

    return zoom(np.eye(n_mesh), (factor, 1), order=3, mode='reflect', grid_mode=True)[:n_out]


def _spline_zoom(mesh: np.ndarray, box: tuple, shape: tuple) -> np.ndarray:
    """Expand a background mesh to ``shape`` as Background2D's cubic-spline zoom does.

    A spline zoom is separable, so it is the product ``A @ mesh @ B.T`` of two
    small 1D zoom matrices: two matrix products instead of evaluating a 4x4
    spline at every pixel, about 20 times faster on a full frame. The result
    is clipped to the mesh's range, as Background2D clips it.
    """
    mesh = np.asarray(mesh, dtype=np.float64)
    rows = _zoom_matrix(mesh.shape[0], box[0], shape[0])
    cols = _zoom_matrix(mesh.shape[1], box[1], shape[1])
    image = (rows @ mesh) @ cols.T
    return np.clip(image, mesh.min(), mesh.max(), out=image)


def _load_frame(fits_fn) -> np.ndarray:
    if isinstance(fits_fn, np.ndarray):
        return fits_fn
    return np.asarray(read_image(fits_fn))
