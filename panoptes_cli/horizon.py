"""A local horizon: a default altitude plus obstructions given as alt/az points."""

from panoptes_cli.error import IllegalValue


class Horizon:
    """The horizon line of a site, one altitude per whole degree of azimuth.

    Each obstruction is a list of two or more ``[alt, az]`` points; between
    neighbouring points the obstruction's altitude is interpolated linearly.
    An azimuth between -360 and 0 has 360 added.

    >>> horizon = Horizon(obstructions=[[[40, 30], [40, 75]], [[50, 180], [40, 200]]])
    >>> float(horizon.horizon_line[50]), float(horizon.horizon_line[190]), float(horizon.horizon_line[100])
    (40.0, 45.0, 30.0)
    >>> Horizon(obstructions=[[[95, 30], [40, 75]]])
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: horizon point [95, 30]: altitude must be within 0 to 90 degrees

    Args:
        obstructions (list(list(list)), optional): The obstructions; default
            none, a flat horizon at ``default_horizon``.
        default_horizon (float, optional): Altitude where nothing obstructs.
    """

    def __init__(self, obstructions=None, default_horizon=30):
        import numpy as np

        self.obstructions = [self._check_obstruction(points) for points in (obstructions or [])]
        self.default_horizon = float(default_horizon)
        self.horizon_line = np.full(360, self.default_horizon)
        azimuths = np.arange(360)
        for points in self.obstructions:
            for (alt0, az0), (alt1, az1) in zip(points, points[1:]):
                span = (az1 - az0) % 360
                covered = (azimuths - az0) % 360 <= span
                fraction = ((azimuths - az0) % 360) / span if span else 0
                line = alt0 + (alt1 - alt0) * fraction
                self.horizon_line = np.where(covered, np.maximum(self.horizon_line, line), self.horizon_line)

    @staticmethod
    def _check_obstruction(points):
        if len(points) < 2:
            raise IllegalValue(f'horizon obstruction {points}: needs at least two [alt, az] points')
        checked = []
        for point in points:
            if len(point) != 2:
                raise IllegalValue(f'horizon point {point}: must be an [alt, az] pair')
            alt, az = float(point[0]), float(point[1])
            if not 0 <= alt <= 90:
                raise IllegalValue(f'horizon point {point}: altitude must be within 0 to 90 degrees')
            if not -360 < az <= 360:
                raise IllegalValue(f'horizon point {point}: azimuth must be within -360 to 360 degrees')
            checked.append((alt, az + 360 if az < 0 else az))
        return checked
