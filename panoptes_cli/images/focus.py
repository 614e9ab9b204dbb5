"""Focus metrics for images: how sharp is a frame (bigger is sharper).

>>> import numpy as np
>>> from panoptes_cli.images.focus import focus_metric
>>> yy, xx = np.mgrid[0:41, 0:41]
>>> def star(sigma):
...     return np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (2 * sigma ** 2)) / sigma ** 2
>>> bool(focus_metric(star(1.0)) > focus_metric(star(3.0)))
True
"""

from collections.abc import Callable

import numpy as np

from panoptes_cli.error import IllegalValue
from panoptes_cli.images.reading import read_image


def focus_metric(data, merit_function: str | Callable = 'vollath_F4', **kwargs):
    """Return a figure of merit for how well ``data`` is focused.

    ``merit_function`` is a function, or the name of one in this module
    (``vollath_F4``); other keyword arguments go to it.

    >>> import numpy as np
    >>> from panoptes_cli.images.focus import focus_metric
    >>> data = np.arange(1.0, 10.0).reshape(3, 3)
    >>> float(focus_metric(data))
    5.0
    >>> float(focus_metric(data, 'vollath_F4', axis='x'))
    1.0
    >>> float(focus_metric(data, merit_function=lambda d: d.max()))
    9.0
    >>> focus_metric(data, 'no_such_metric')
    Traceback (most recent call last):
    ...
    KeyError: "Focus merit function 'no_such_metric' not found in panoptes_cli.images.focus"

    Args:
        data (numpy.ndarray): 2D array to calculate the focus metric for.
        merit_function (str or callable): Name of a merit function in this module,
            or a callable taking the data.
        **kwargs: Passed to the merit function.

    Returns:
        scalar: what the merit function returns
    """
    if isinstance(merit_function, str):
        function = _MERIT_FUNCTIONS.get(merit_function)
        if function is None:
            raise KeyError(f"Focus merit function '{merit_function}' not found in {__name__}")
        merit_function = function
    return merit_function(data, **kwargs)


def vollath_F4(data, axis: str | None = None) -> np.float64:
    """Compute F4 focus metric.

    Computes the F_4 focus metric as defined by Vollath (1998) for the given
    2D numpy array: the mean product of neighbouring pixels minus the mean
    product of pixels two apart, along the y axis, the x axis, or the mean of
    the two (default). Integer data is computed in float64 (no overflow);
    masked pixels of a masked array are left out.

    >>> import numpy as np
    >>> from panoptes_cli.images.focus import vollath_F4
    >>> data = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.uint16)
    >>> float(vollath_F4(data, axis='y'))
    9.0
    >>> float(vollath_F4(data, axis='X'))
    1.0
    >>> float(vollath_F4(data))
    5.0
    >>> vollath_F4(data, axis='z')
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: axis must be one of 'Y', 'y', 'X', 'x' or None, got 'z'

    Args:
        data (numpy.ndarray): 2D array to calculate F4 on.
        axis (str, optional): 'Y'/'y', 'X'/'x' or None (default), which calculates
            the F4 value for both axes and returns the mean.

    Returns:
        numpy.float64: Calculated F4 value for y, x axis or both.

    Raises:
        IllegalValue: ``axis`` is not one of the above, or the data is not 2D.
    """
    which = None if axis is None else str(axis).lower()
    if which not in (None, 'x', 'y'):
        raise IllegalValue(f"axis must be one of 'Y', 'y', 'X', 'x' or None, got {axis!r}")
    if np.ndim(data) != 2:
        raise IllegalValue(f'F4 needs a 2D array, got shape {np.shape(data)}')

    if np.ma.isMaskedArray(data) and np.ma.getmask(data) is not np.ma.nomask:
        return _masked_f4(np.ma.asarray(data, dtype=np.float64), which)

    data = np.ascontiguousarray(data, dtype=np.float64)
    if which == 'y':
        return _f4_y(data)
    if which == 'x':
        return _f4_x(data)
    return (_f4_y(data) + _f4_x(data)) / 2


def _lagged_mean(flat_a: np.ndarray, flat_b: np.ndarray, count: int) -> np.float64:
    return np.float64(np.dot(flat_a, flat_b) / count)


def _f4_y(data: np.ndarray) -> np.float64:
    # Whole rows are contiguous, so each sum of products is a single BLAS dot
    # product with no temporary arrays.
    width = data.shape[1]
    flat = data.ravel()
    a1 = _lagged_mean(flat[width:], flat[:-width], flat.size - width)
    a2 = _lagged_mean(flat[2 * width:], flat[:-2 * width], flat.size - 2 * width)
    return a1 - a2


def _f4_x(data: np.ndarray) -> np.float64:
    # Lagging the flattened array by one (two) pixels pairs neighbours along
    # x, plus one (two) pairs per row that wrap onto the next row: take those
    # wrapped pairs out again.
    height, width = data.shape
    flat = data.ravel()
    wrap1 = np.dot(data[1:, 0], data[:-1, -1])
    a1 = (np.dot(flat[1:], flat[:-1]) - wrap1) / (height * (width - 1))
    wrap2 = np.dot(data[1:, 0], data[:-1, -2]) + np.dot(data[1:, 1], data[:-1, -1])
    a2 = (np.dot(flat[2:], flat[:-2]) - wrap2) / (height * (width - 2))
    return np.float64(a1 - a2)


def _masked_f4(data: np.ma.MaskedArray, which: str | None) -> np.float64:
    def along_y():
        return (data[1:] * data[:-1]).mean() - (data[2:] * data[:-2]).mean()

    def along_x():
        return (data[:, 1:] * data[:, :-1]).mean() - (data[:, 2:] * data[:, :-2]).mean()

    if which == 'y':
        return np.float64(along_y())
    if which == 'x':
        return np.float64(along_x())
    return np.float64((along_y() + along_x()) / 2)


_MERIT_FUNCTIONS = {'vollath_F4': vollath_F4}


def focus_metric_file(fname, merit_function: str | Callable = 'vollath_F4', **kwargs) -> float:
    """Return :func:`focus_metric` of the pixels of a FITS image or CR2 raw frame.

    >>> from pathlib import Path
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> round(focus_metric_file(SHARED / 'tiny.fits', axis='y'), 1)
    8066.2
    """
    return float(focus_metric(read_image(fname), merit_function, **kwargs))
