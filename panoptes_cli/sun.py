"""Tonight's sun and moon: sunset, twilights, sunrise and the moon's illumination.

Computed offline with astropy: IERS downloads are switched off, so Earth
orientation comes from the tables astropy bundles (and is taken as zero past
their end), and the Sun and Moon come from astropy's built-in ephemeris. That
costs at most about a second of UT1, far below what refraction changes from
night to night, so event times are good to about a minute (the horizon's
refraction is taken as the standard 34 arcminutes).

A *night* runs from the evening's sunset to the next morning's sunrise at the
site; "tonight" is the night that has not ended yet: the current one after
sunset or before sunrise, else the coming one.
"""

import contextlib
import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date as _date, datetime, timedelta, timezone

from panoptes_cli.error import IllegalValue, InvalidConfig, PanError

# Sun altitudes (degrees, the centre of the disc, no refraction) that mark each event.
# Sunrise and sunset: the upper limb on the horizon with standard refraction
# (16' semi-diameter + 34' refraction), as almanacs define them.
SUNSET_ALTITUDE = -50 / 60
EVENTS = {
    'sunset': (SUNSET_ALTITUDE, 'evening'),
    'civil_dusk': (-6.0, 'evening'),
    'nautical_dusk': (-12.0, 'evening'),
    'astronomical_dusk': (-18.0, 'evening'),
    'astronomical_dawn': (-18.0, 'morning'),
    'nautical_dawn': (-12.0, 'morning'),
    'civil_dawn': (-6.0, 'morning'),
    'sunrise': (SUNSET_ALTITUDE, 'morning'),
}

# Sampling step of the Sun's altitude; crossings in between are interpolated
# linearly, which is good to well under a second at this step.
_STEP = timedelta(minutes=2)


class NoSuchEvent(PanError):
    """The Sun does not reach the asked altitude at this site tonight (polar day or night)."""


@dataclass(frozen=True)
class Site:
    """Where the observatory is: degrees north, degrees east, metres above sea level."""

    latitude: float
    longitude: float
    elevation: float = 0.0
    name: str | None = None

    def __post_init__(self):
        if not -90 <= self.latitude <= 90:
            raise IllegalValue(f'latitude {self.latitude}: must be between -90 and 90 degrees')
        if not -180 <= self.longitude <= 360:
            raise IllegalValue(f'longitude {self.longitude}: must be between -180 and 360 degrees')
        if not -500 <= self.elevation <= 10000:
            raise IllegalValue(f'elevation {self.elevation}: must be between -500 and 10000 m')


def event_name(text: str) -> str:
    """Return the key of an event named on the command line (``astronomical-dusk`` or ``astronomical_dusk``).

    >>> event_name('Astronomical-Dusk')
    'astronomical_dusk'
    >>> event_name('teatime')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: teatime: not an event; use one of sunset, ...
    """
    key = text.strip().lower().replace('-', '_')
    if key not in EVENTS:
        names = ', '.join(name.replace('_', '-') for name in EVENTS)
        raise IllegalValue(f'{text}: not an event; use one of {names}')
    return key


def site_from_config(config: dict | None = None) -> Site:
    """Return the Site in a unit config's ``location`` (loaded from the config file when not given)."""
    from panoptes_cli.utils import get_quantity_value

    if config is None:
        from panoptes_cli.config.helpers import load_config

        config = load_config(strict=True)
    location = config.get('location') or {}

    def number(key: str, unit: str, required: bool = True) -> float:
        value = location.get(key)
        if value is None:
            if required:
                raise InvalidConfig(f'location.{key}: missing from the config; '
                                    'set it or pass --lat/--lon')
            return 0.0
        try:
            if isinstance(value, str):
                from astropy import units as u

                value = u.Quantity(value)
            return float(get_quantity_value(value, unit) if hasattr(value, 'unit') else value)
        except (TypeError, ValueError) as exc:
            raise InvalidConfig(f'location.{key}: {value!r} is not a {unit} value') from exc

    return Site(latitude=number('latitude', 'deg'), longitude=number('longitude', 'deg'),
                elevation=number('elevation', 'm', required=False), name=location.get('name'))


@contextlib.contextmanager
def _offline_astropy():
    """Never download IERS tables; beyond the bundled ones, use zero corrections quietly."""
    from astropy.utils import iers

    with iers.conf.set_temp('auto_download', False), \
            iers.conf.set_temp('auto_max_age', None), \
            iers.conf.set_temp('iers_degraded_accuracy', 'ignore'):
        yield


def _solar_noon_before(moment: datetime, longitude: float) -> datetime:
    """Return the last local mean solar noon at or before ``moment`` (naive UTC)."""
    offset = timedelta(hours=longitude / 15)
    local = moment + offset
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon > local:
        noon -= timedelta(days=1)
    return noon - offset


def _sun_altitudes(site: Site, start: datetime, steps: int):
    """Return the Sun's altitude in degrees every ``_STEP`` from ``start``."""
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, get_body
    from astropy.time import Time

    times = Time(start, scale='utc') + np.arange(steps) * _STEP.total_seconds() * u.s
    location = EarthLocation.from_geodetic(site.longitude * u.deg, site.latitude * u.deg,
                                           site.elevation * u.m)
    frame = AltAz(obstime=times, location=location)  # no pressure: geometric altitudes
    return get_body('sun', times, location).transform_to(frame).alt.deg


def _crossing(start: datetime, altitudes, threshold: float, falling: bool) -> datetime | None:
    """Return the first time the sampled altitude crosses ``threshold`` going down (or up)."""
    for i in range(len(altitudes) - 1):
        before, after = altitudes[i] - threshold, altitudes[i + 1] - threshold
        if (before > 0 >= after) if falling else (before <= 0 < after):
            fraction = before / (before - after)
            return start + _STEP * (i + fraction)
    return None


def _moon_illumination(site: Site, moment: datetime) -> float:
    """Return the lit fraction of the Moon's disc (0 new, 1 full) at ``moment``."""
    from astropy.coordinates import get_body
    from astropy.time import Time

    when = Time(moment, scale='utc')
    sun, moon = get_body('sun', when), get_body('moon', when)
    elongation = sun.separation(moon).rad
    sun_distance, moon_distance = sun.distance.to_value('km'), moon.distance.to_value('km')
    phase_angle = math.atan2(sun_distance * math.sin(elongation),
                             moon_distance - sun_distance * math.cos(elongation))
    return (1 + math.cos(phase_angle)) / 2


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc).isoformat(timespec='seconds').replace('+00:00', 'Z')


def _night_from_noon(site: Site, noon: datetime) -> dict:
    """Return the night's events (naive UTC datetimes or None) after the solar noon ``noon``."""
    steps = int(timedelta(days=1) / _STEP) + 1
    altitudes = _sun_altitudes(site, noon, steps)
    midnight = noon + timedelta(hours=12)
    split = int((midnight - noon) / _STEP)
    times = {}
    for name, (threshold, half) in EVENTS.items():
        if half == 'evening':
            times[name] = _crossing(noon, altitudes[:split + 1], threshold, falling=True)
        else:
            times[name] = _crossing(midnight, altitudes[split:], threshold, falling=False)
    times['midnight'] = midnight
    return times


def night(site: Site, when: datetime | _date | None = None) -> dict:
    """Return tonight's sunset, twilights, sunrise and Moon for ``site``.

    ``when`` is a naive UTC datetime (default now, honouring ``$POCSTIME``): the
    night not yet over at that moment. A ``date`` picks the night that starts
    on that local evening. Times are ISO 8601 strings in UTC (``...Z``); an
    event the Sun does not reach tonight (a summer night at high latitude) is
    None. The Moon's illumination is taken at local solar midnight.

    >>> tonight = night(Site(19.54, -155.58, 3400.0), _date(2016, 9, 8))
    >>> tonight['sunset'], tonight['astronomical_dusk'], tonight['sunrise']
    ('2016-09-09T04:30:...Z', '2016-09-09T05:44:...Z', '2016-09-09T16:08:...Z')
    >>> round(tonight['moon']['illumination'], 2)
    0.5
    """
    from panoptes_cli.time import utc_now

    with _offline_astropy():
        if isinstance(when, _date) and not isinstance(when, datetime):
            noon = datetime(when.year, when.month, when.day, 12) - timedelta(hours=site.longitude / 15)
            times = _night_from_noon(site, noon)
        else:
            moment = when or utc_now()
            noon = _solar_noon_before(moment, site.longitude)
            times = _night_from_noon(site, noon)
            end = times['sunrise'] or noon + timedelta(days=1)
            if end <= moment:
                noon += timedelta(days=1)
                times = _night_from_noon(site, noon)
        illumination = _moon_illumination(site, times['midnight'])

    local_date = (noon + timedelta(hours=site.longitude / 15)).date()
    result = {
        'night_of': local_date.isoformat(),
        'location': {'name': site.name, 'latitude': site.latitude,
                     'longitude': site.longitude, 'elevation': site.elevation},
    }
    result.update({name: _iso(moment) for name, moment in times.items()})
    result['moon'] = {'illumination': round(illumination, 4), 'at': _iso(times['midnight'])}
    return result


def parse_iso(text: str) -> datetime:
    """Return the naive UTC datetime of an ISO time written by :func:`night`."""
    moment = datetime.fromisoformat(text.replace('Z', '+00:00'))
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def wait_until(target: datetime, now: Callable[[], datetime] | None = None,
               sleep: Callable[[float], None] = _time.sleep, max_nap: float = 30.0) -> float:
    """Sleep until the naive UTC ``target``; return the seconds slept (0 if it has passed).

    Sleeps in naps of at most ``max_nap`` seconds and reads the wall clock after
    each, so a suspended host or a clock step does not make it oversleep. Ctrl-C
    (KeyboardInterrupt) ends it at once.
    """
    if now is None:
        from panoptes_cli.time import utc_now as now
    slept = 0.0
    while True:
        left = (target - now()).total_seconds()
        if left <= 0:
            return slept
        nap = min(left, max_nap)
        sleep(nap)
        slept += nap
