"""General helpers: lists, quantities, ids from paths, signals, disk space, coordinates."""

import contextlib
import os
import re
import shutil
import signal
import warnings
from urllib.parse import unquote

from panoptes_cli.error import NotFound
# Documented here by the manual; defined in a base module that time.py can import too.
from panoptes_cli.quantities import get_quantity_value  # noqa: F401
from panoptes_cli.time import current_time

# PANOPTES paths look like .../PAN012/ee04d1/20190820T111638/20190820T122447.fits (or with
# '_' between the parts): unit id, camera id, sequence start time, image time. Any six
# letters or digits make a camera id (0.2.29 took only hex-like ones; test frames use XXXXXX).
_PATH_IDS = re.compile(
    r'(?P<unit>PAN\w{3})[/_](?P<camera>\w{6})[/_](?P<sequence>\d{8}T\d{6})[/_](?P<image>\d{8}T\d{6})')


def listify(obj) -> list:
    """Given an object, return a list.

    None gives an empty list, a list is returned as is, a dict gives its
    values, dict views and other non-string iterables of that kind give their
    items, anything else becomes the single member of a new list.

    >>> listify(42)
    [42]
    >>> listify('foo')
    ['foo']
    >>> listify(None)
    []
    >>> listify(['a'])
    ['a']
    >>> my_dict = dict(a=42, b='foo')
    >>> listify(my_dict)
    [42, 'foo']
    >>> listify(my_dict.values())
    [42, 'foo']
    >>> listify(my_dict.keys())
    ['a', 'b']
    """
    if obj is None:
        return []
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (type({}.keys()), type({}.values()), type({}.items()))):
        return list(obj)
    return [obj]


def _parse_param_value(value: str):
    """Parse one ``key=value`` value: quoted stays a string, numbers become floats."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in '\'"':
        return value[1:-1]
    try:
        return float(value)
    except ValueError:
        return value


def string_to_params(opts: str):
    """Parse a single string into positional and keyword parameters.

    Anything containing ``=`` is a keyword argument (leading dashes are
    stripped from the key); a key given several times collects a list. Values
    are parsed as floats where possible unless quoted.

    >>> args, kwargs = string_to_params("parg1 parg2 key1=a_str key2=2 key2='2' key3=03")
    >>> args
    ['parg1', 'parg2']
    >>> kwargs
    {'key1': 'a_str', 'key2': [2.0, '2'], 'key3': 3.0}
    >>> isinstance(kwargs['key2'][0], float)
    True
    >>> kwargs['key2'][1] == '2'
    True
    >>> args, kwargs = string_to_params('--key1=val1 --key1-2=val1-2')
    >>> kwargs
    {'key1': 'val1', 'key1-2': 'val1-2'}

    Returns:
        tuple(list, dict): The ``*args`` and ``**kwargs`` a function would receive.
    """
    args = []
    kwargs = {}
    for token in opts.split():
        if '=' not in token:
            args.append(token)
            continue
        key, value = token.split('=', 1)
        key = key.lstrip('-')
        value = _parse_param_value(value)
        if key in kwargs:
            kwargs[key] = listify(kwargs[key]) + [value]
        else:
            kwargs[key] = value
    return args, kwargs


def image_id_from_path(path: str) -> str | None:
    """Return the image id ``<unit>_<camera>_<image time>`` from a path or uri, or None.

    >>> path = 'gs://panoptes-raw-images/PAN012/ee04d1/20190820T111638/20190820T122447.fits'
    >>> image_id_from_path(path)
    'PAN012_ee04d1_20190820T122447'
    >>> image_id_from_path('nothing/to/match')

    URL-encoded paths (``PAN012%2Fee04d1%2F...``) are decoded first.
    """
    match = _PATH_IDS.search(unquote(str(path)))
    if match is None:
        return None
    return f"{match['unit']}_{match['camera']}_{match['image']}"


def sequence_id_from_path(path: str) -> str | None:
    """Return the sequence id ``<unit>_<camera>_<sequence time>`` from a path or uri, or None.

    >>> path = 'gs://panoptes-raw-images/PAN012/ee04d1/20190820T111638/20190820T122447.fits'
    >>> sequence_id_from_path(path)
    'PAN012_ee04d1_20190820T111638'
    >>> sequence_id_from_path('nothing/to/match')

    The path must go down to an image, as for ``image_id_from_path``; URL-encoded paths
    are decoded first.
    """
    match = _PATH_IDS.search(unquote(str(path)))
    if match is None:
        return None
    return f"{match['unit']}_{match['camera']}_{match['sequence']}"


def moving_average(data_set, periods: int = 3):
    """Return the moving average of ``data_set`` over ``periods`` points, one per input value.

    The window is centred on each value; near the ends it runs past the data, which counts
    as zeros there (numpy's ``convolve`` in 'same' mode, as panoptes-utils 0.2.29).

    >>> moving_average([1, 2, 3, 4, 5], periods=3)
    array([1., 2., 3., 4., 3.])
    """
    import numpy as np

    weights = np.ones(periods) / periods
    return np.convolve(np.asarray(data_set, dtype=float), weights, mode='same')


class DelaySigTerm(contextlib.ContextDecorator):
    """Delay SIGTERM during a critical section, such as saving to a database.

    A SIGTERM that arrives inside the block is held and delivered (to the
    handler that was in place before) when the block exits.

    >>> with DelaySigTerm():
    ...     pass
    """

    def __enter__(self):
        self.caught_signal = None
        self.previous_handler = signal.getsignal(signal.SIGTERM)

        def hold(signum, frame):
            self.caught_signal = (signum, frame)

        signal.signal(signal.SIGTERM, hold)
        return self

    def __exit__(self, *exc_info):
        signal.signal(signal.SIGTERM, self.previous_handler)
        if self.caught_signal is not None:
            if callable(self.previous_handler):
                self.previous_handler(*self.caught_signal)
            elif self.previous_handler == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGTERM)
        return False


def get_free_space(directory=None):
    """Return the free space of the file system holding ``directory``, in gigabytes.

    >>> get_free_space()
    <Quantity ... Gbyte>
    >>> get_free_space(directory='/')
    <Quantity ... Gbyte>

    Args:
        directory (str, optional): Path to a directory; default ``$PANDIR``,
            or the current directory when ``PANDIR`` is not set.

    Returns:
        astropy.units.Quantity: Free space in ``Gbyte``.
    """
    from astropy import units as u

    directory = directory or os.environ.get('PANDIR') or os.getcwd()
    try:
        free_bytes = shutil.disk_usage(directory).free
    except FileNotFoundError:
        raise NotFound(f'{directory}: no such directory; cannot measure free space') from None
    return (free_bytes / 1e9) * u.gigabyte


def altaz_to_radec(alt=None, az=None, location=None, obstime=None, **kwargs):
    """Convert alt/az (degrees or Quantities) at a location and time to an ICRS SkyCoord.

    It never reaches for the network: astropy's bundled Earth-rotation
    tables are used, which is ample for pointing.

    >>> from astropy.coordinates import EarthLocation
    >>> from astropy import units as u
    >>> keck = EarthLocation.from_geodetic(lon=-155.47 * u.deg, lat=19.83 * u.deg, height=4160 * u.m)
    >>> altaz_to_radec(alt=75, az=180, location=keck, obstime='2020-02-02T20:20:02.02')
    <SkyCoord (ICRS): (ra, dec) in deg
        (281.7..., 4.80...)>
    >>> altaz_to_radec(alt=4500 * u.arcmin, az=180 * u.degree, location=keck,
    ...                obstime='2020-02-02T20:20:02.02')
    <SkyCoord (ICRS): (ra, dec) in deg
        (281.7..., 4.80...)>
    >>> altaz_to_radec()
    Traceback (most recent call last):
      ...
    AssertionError: altaz_to_radec needs a location (an astropy EarthLocation)

    Args:
        alt (astropy.units.Quantity or scalar): Altitude.
        az (astropy.units.Quantity or scalar): Azimuth.
        location (astropy.coordinates.EarthLocation): Where, required.
        obstime (optional): When; default :func:`panoptes_cli.time.current_time`.

    Returns:
        astropy.coordinates.SkyCoord: The ICRS coordinates.
    """
    # An explicit raise, not an assert statement, so that `python -O` keeps the check.
    if location is None:
        raise AssertionError('altaz_to_radec needs a location (an astropy EarthLocation)')

    from astropy import units as u
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.utils import iers
    from astropy.utils.exceptions import AstropyWarning

    obstime = obstime if obstime is not None else current_time()
    alt = alt if hasattr(alt, 'unit') else alt * u.deg
    az = az if hasattr(az, 'unit') else az * u.deg

    # Bundled tables only, used past their age: arcsecond-level error at worst.
    with iers.conf.set_temp('auto_download', False), iers.conf.set_temp('auto_max_age', None), \
            iers.conf.set_temp('iers_degraded_accuracy', 'warn'), warnings.catch_warnings():
        warnings.simplefilter('ignore', AstropyWarning)
        altaz = SkyCoord(alt=alt, az=az, frame=AltAz(obstime=obstime, location=location), **kwargs)
        return altaz.transform_to('icrs')
