"""Time helpers: the observatory's "now", timers and waiting for events.

All times are UTC and not timezone aware. When ``$POCSTIME`` is set it is
taken as the current time and then advanced by one second, so that tests
see monotonically increasing times.
"""

import calendar
import os
import time as _time
from datetime import datetime as _datetime, timedelta, timezone

from panoptes_cli.error import CheckFailed, IllegalValue, Timeout
from panoptes_cli.quantities import get_quantity_value

_MJD_EPOCH = _datetime(1858, 11, 17)


def _pocstime_now() -> _datetime | None:
    """Read ``$POCSTIME`` as a naive UTC datetime and advance it one second.

    Returns None when the variable is not set.
    """
    value = os.environ.get('POCSTIME')
    if not value:
        return None
    try:
        parsed = _datetime.fromisoformat(value.strip())
    except ValueError:
        raise IllegalValue(
            f'POCSTIME={value!r}: not an ISO-8601 time; '
            "use e.g. POCSTIME='1999-12-31 23:59:59' or unset it") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    try:
        advanced = parsed + timedelta(seconds=1)
    except OverflowError:
        advanced = parsed  # 9999-12-31 23:59:59: the clock stops at the last second there is
    os.environ['POCSTIME'] = advanced.isoformat(sep=' ')
    return parsed


def utc_now() -> _datetime:
    """Return "now" as a naive UTC datetime, honouring ``$POCSTIME``."""
    return _pocstime_now() or _datetime.now(timezone.utc).replace(tzinfo=None)


def current_time(flatten=False, datetime=False, pretty=False):
    """Return the current UTC time as an astropy Time, honouring ``$POCSTIME``.

    >>> import os
    >>> os.environ['POCSTIME'] = '1999-12-31 23:59:59'
    >>> current_time(pretty=True)
    '1999-12-31 23:59:59'
    >>> # Next call is one second later when using $POCSTIME.
    >>> current_time(pretty=True)
    '2000-01-01 00:00:00'
    >>> current_time()
    <Time object: scale='utc' format='iso' value=2000-01-01 00:00:01.000>
    >>> current_time(datetime=True)
    datetime.datetime(2000, 1, 1, 0, 0, 2, tzinfo=datetime.timezone.utc)
    >>> current_time(flatten=True)
    '20000101T000003'
    >>> del os.environ['POCSTIME']
    >>> current_time()
    <Time object: scale='utc' format='datetime' value=...>

    Args:
        flatten (bool): Return a string like ``19991231T235959`` instead.
        datetime (bool): Return a timezone-aware (UTC) ``datetime.datetime`` instead.
        pretty (bool): Return a string like ``1999-12-31 23:59:59`` instead.

    Returns:
        astropy.time.Time: Object representing now (or the requested form).
    """
    from astropy.time import Time

    pocs_now = _pocstime_now()
    if pocs_now is not None:
        now = Time(pocs_now.strftime('%Y-%m-%d %H:%M:%S.%f'), format='iso', scale='utc')
    else:
        now = Time(_datetime.now(timezone.utc).replace(tzinfo=None), format='datetime', scale='utc')

    if flatten:
        return flatten_time(now)
    if datetime:
        return now.to_datetime(timezone=timezone.utc)
    if pretty:
        return now.isot.split('.')[0].replace('T', ' ')
    return now


def flatten_time(t) -> str:
    """Flatten an astropy Time to digits and a ``T``, e.g. ``19991231T235959``.

    >>> from astropy.time import Time
    >>> flatten_time(Time('1999-12-31 23:59:59'))
    '19991231T235959'
    """
    return t.isot.replace('-', '').replace(':', '').split('.')[0]


def time_forms(now: _datetime | None = None) -> dict:
    """Describe a UTC time in the forms shell scripts want, without astropy.

    This is what ``panoptes time now`` prints; it avoids importing astropy so
    the command stays fast.

    >>> from datetime import datetime
    >>> forms = time_forms(datetime(1999, 12, 31, 23, 59, 59))
    >>> forms['iso'], forms['flat'], forms['pretty']
    ('1999-12-31T23:59:59.000', '19991231T235959', '1999-12-31 23:59:59')
    >>> forms['mjd'], forms['unix']
    (51543.99998842592, 946684799.0)

    Args:
        now (datetime.datetime, optional): A naive UTC time; default
            :func:`utc_now`.

    Returns:
        dict: ``iso``, ``flat``, ``pretty``, ``mjd`` and ``unix`` forms.
    """
    now = now or utc_now()
    return {
        'iso': now.isoformat(timespec='milliseconds'),
        'flat': now.strftime('%Y%m%dT%H%M%S'),
        'pretty': now.strftime('%Y-%m-%d %H:%M:%S'),
        'mjd': (now - _MJD_EPOCH) / timedelta(days=1),
        'unix': calendar.timegm(now.timetuple()) + now.microsecond / 1e6,
    }


def _seconds(duration) -> float:
    """Return a duration given as a number of seconds or a Quantity, in seconds."""
    return float(get_quantity_value(duration, 'second'))


class CountdownTimer:
    """Tell whether a given duration has passed since the timer (re)started.

    >>> timer = CountdownTimer(0.05)
    >>> timer.expired()
    False
    >>> timer.sleep()
    False
    >>> timer.expired()
    True
    >>> CountdownTimer(0).time_left()
    0

    Args:
        duration (int or float or astropy.units.Quantity): Amount of time
            before the timer expires, in seconds or as a time Quantity.
    """

    def __init__(self, duration):
        self.duration = _seconds(duration)
        if self.duration < 0:
            raise CheckFailed(f'CountdownTimer duration must be >= 0, got {self.duration}')
        self.is_non_blocking = self.duration == 0
        self.target_time = None
        self.restart()

    def __repr__(self):
        return f'CountdownTimer(duration={self.duration}, time_left={self.time_left():.2f})'

    def expired(self) -> bool:
        """True once the duration has passed (never for a timer of None)."""
        return self.time_left() <= 0

    def time_left(self):
        """Return how many seconds are left until the timeout expires (0 if non-blocking)."""
        if self.is_non_blocking:
            return 0
        return max(0.0, self.target_time - _time.monotonic())

    def restart(self):
        """Restart the timed duration."""
        from panoptes_cli.logging import logger

        self.target_time = _time.monotonic() + self.duration
        kind = 'non-blocking' if self.is_non_blocking else 'blocking'
        logger.debug(f'Restarting Timer ({kind}) {self.time_left():.02f}/{self.duration:.02f}')

    def sleep(self, max_sleep=None) -> bool:
        """Sleep until the timer runs out, or ``max_sleep`` seconds if that comes first.

        Returns:
            bool: True if slept for less than ``time_left()``, False otherwise.

        Raises:
            CheckFailed: ``max_sleep`` is negative (an AssertionError, as in 0.2.29).
        """
        from panoptes_cli.logging import logger

        remaining = self.time_left()
        if remaining <= 0:
            return False
        if max_sleep is not None and _seconds(max_sleep) < 0:
            raise CheckFailed(f'CountdownTimer.sleep: max_sleep must be >= 0, got {max_sleep}')
        if max_sleep is not None and _seconds(max_sleep) < remaining:
            logger.debug(f'Sleeping for {_seconds(max_sleep):.02f} seconds')
            _time.sleep(_seconds(max_sleep))
            return True
        logger.debug(f'Sleeping for {remaining:.02f} seconds')
        _time.sleep(remaining)
        return False


def wait_for_events(events, timeout=600, sleep_delay=5.0, callback=None) -> bool:
    """Wait for event(s) to be set, or for ``timeout`` seconds at most.

    Checks every ``sleep_delay`` seconds (a number or a time Quantity; the
    manual's default of ``5 s`` is kept, as a plain number so that importing
    this module stays cheap). ``callback``, if given, is called at every check
    and stops the wait by returning False.

    >>> import time
    >>> import threading
    >>> event0 = threading.Event()
    >>> event1 = threading.Event()
    >>> def interrupt_cb(): time.sleep(0.1); return False
    >>> wait_for_events([event0, event1], timeout=30, callback=interrupt_cb)
    False
    >>> wait_for_events([event0, event1], timeout=0.2, sleep_delay=0.05)
    Traceback (most recent call last):
      ...
    panoptes_cli.error.Timeout: Timeout: Timeout waiting for generic event
    >>> def set_events(): time.sleep(0.1); event0.set(); event1.set()
    >>> threading.Thread(target=set_events).start()
    >>> wait_for_events([event0, event1], timeout=30, sleep_delay=0.05)
    True

    Returns:
        bool: True if all events were set, False if the callback interrupted.

    Raises:
        panoptes_cli.error.Timeout: If the events were not all set in time.
    """
    events = events if isinstance(events, (list, tuple)) else [events]
    deadline = _time.monotonic() + _seconds(timeout)
    delay = _seconds(sleep_delay)
    while not all(event.is_set() for event in events):
        if callback is not None and not callback():
            return False
        remaining = deadline - _time.monotonic()
        if remaining <= 0:
            raise Timeout('Timeout waiting for generic event')
        _time.sleep(min(delay, remaining))
    return True
