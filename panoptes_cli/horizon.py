"""A local horizon: a default altitude plus obstructions given as alt/az points."""

from numbers import Real

import numpy as np

from panoptes_cli.error import CheckFailed


class BadHorizonPoint(CheckFailed):
    """An obstruction or point that cannot describe a horizon (also an AssertionError, as in 0.2.29)."""


class Horizon:
    """The horizon line of a site, one altitude per whole degree of azimuth.

    Each obstruction is a list of two or more ``[alt, az]`` points. Its points are taken
    in azimuth order (as panoptes-utils 0.2.29 sorts them), from the smallest azimuth to
    the largest, with the altitude interpolated linearly between neighbours; inside that
    span the obstruction replaces the default altitude, even where it is lower. Where two
    obstructions overlap, the higher one counts. An azimuth from -360 to 0 has 360 added;
    an obstruction across north is given as two obstructions, one each side of 0.

    >>> horizon = Horizon(obstructions=[[[40, 30], [40, 75]], [[50, 180], [40, 200]]])
    >>> float(horizon.horizon_line[50]), float(horizon.horizon_line[190]), float(horizon.horizon_line[100])
    (40.0, 45.0, 30.0)
    >>> float(Horizon(obstructions=[[[40, 75], [40, 30]]]).horizon_line[50])
    40.0
    >>> float(Horizon(obstructions=[[[10, 100], [10, 120]]]).horizon_line[110])
    10.0
    >>> Horizon(obstructions=[[[95, 30], [40, 75]]])
    Traceback (most recent call last):
      ...
    panoptes_cli.horizon.BadHorizonPoint: BadHorizonPoint: horizon point [95, 30]: altitude must be within 0 to 90 degrees

    Args:
        obstructions (list(list(list)), optional): The obstructions; default
            none, a flat horizon at ``default_horizon``.
        default_horizon (float, optional): Altitude where nothing obstructs.
    """

    def __init__(self, obstructions=None, default_horizon=30):
        self.obstructions = [self._check_obstruction(points) for points in (obstructions or [])]
        self.default_horizon = default_horizon
        self.alt = [[alt for alt, _ in points] for points in self.obstructions]
        self.az = [[az for _, az in points] for points in self.obstructions]
        self.horizon_line = np.full(360, float(default_horizon))
        obstructed = np.full(360, -np.inf)
        for alts, azs in zip(self.alt, self.az):
            degrees = np.arange(np.ceil(azs[0]), np.floor(azs[-1]) + 1)
            indices = degrees.astype(int) % 360
            obstructed[indices] = np.maximum(obstructed[indices], np.interp(degrees, azs, alts))
        self.horizon_line = np.where(np.isfinite(obstructed), obstructed, self.horizon_line)

    @staticmethod
    def _check_obstruction(points):
        if not isinstance(points, (list, tuple)) or len(points) < 2:
            raise BadHorizonPoint(f'horizon obstruction {points}: needs at least two [alt, az] points')
        checked = []
        for point in points:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise BadHorizonPoint(f'horizon point {point}: must be an [alt, az] pair')
            if not all(isinstance(value, Real) and not isinstance(value, bool) for value in point):
                raise BadHorizonPoint(f'horizon point {point}: altitude and azimuth must be numbers')
            alt, az = float(point[0]), float(point[1])
            if not 0 <= alt <= 90:
                raise BadHorizonPoint(f'horizon point {point}: altitude must be within 0 to 90 degrees')
            if not -360 <= az <= 360:
                raise BadHorizonPoint(f'horizon point {point}: azimuth must be within -360 to 360 degrees')
            checked.append((alt, az + 360 if az < 0 else az))
        return sorted(checked, key=lambda point: point[1])
