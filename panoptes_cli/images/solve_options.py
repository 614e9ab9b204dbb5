"""What one plate solve is told: :class:`SolveOptions` and the solve-field command line.

The options travel as one typed object from ``panoptes fits solve`` (or the
manual's keyword arguments, through :meth:`SolveOptions.from_kwargs`) down to
the solve-field command line that :meth:`SolveOptions.arguments` writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoptes_cli.error import IllegalValue, PanError

PathLike = str | os.PathLike

# solve-field's own options as the manual's solve_field uses them, except the
# downsampling (chosen from the image size) and the outputs we do not read.
DEFAULT_OPTIONS = [
    '--guess-scale', '--no-verify', '--crpix-center', '--temp-axy',
    '--index-xyls', 'none', '--solved', 'none', '--match', 'none', '--rdls', 'none',
    '--corr', 'none', '--new-fits', 'none', '--no-plots',
]
# Mount positions are a hint, not the camera's pointing: a PANOPTES camera
# looks several degrees away from the mount axis.
DEFAULT_RADIUS = 15.0
# Downsample only while the smaller side keeps this many pixels: fewer leave
# too few stars to match (a 200 px crop does not solve downsampled by 2).
MIN_DOWNSAMPLED_SIDE = 300


def downsample_for(width: int, height: int) -> int:
    """Return the downsampling factor (4, 2 or 1) that leaves enough pixels to solve.

    >>> downsample_for(5208, 3476), downsample_for(700, 700), downsample_for(200, 200)
    (4, 2, 1)
    """
    for factor in (4, 2):
        if min(width, height) // factor >= MIN_DOWNSAMPLED_SIDE:
            return factor
    return 1


def option_args(options: Mapping) -> list[str]:
    """Turn ``{'--opt': value}`` into solve-field arguments.

    True gives the bare flag, False or None leaves it out, a list repeats it.

    >>> option_args({'--overwrite': True, '--no-tweak': False, '--pnm': '/tmp/a.bmp',
    ...              '--depth': [10, 20]})
    ['--overwrite', '--pnm', '/tmp/a.bmp', '--depth', '10', '--depth', '20']
    """
    args = []
    for key, value in options.items():
        if not key.startswith('-'):
            raise TypeError(f'solve-field options start with "--": {key!r}')
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is True:
                args.append(key)
            elif item is not None and item is not False:
                args.extend([key, str(item)])
    return args


def index_config(index_dirs: Iterable[os.PathLike | str], workdir: Path) -> Path:
    """Write a backend config file that searches ``index_dirs`` for index files."""
    lines = []
    for directory in index_dirs:
        directory = Path(directory).expanduser().resolve()
        if not directory.is_dir():
            raise PanError(f'{directory}: no such index directory')
        lines.append(f'add_path {directory}')
    config = workdir / 'backend.cfg'
    config.write_text('\n'.join([*lines, 'autoindex', '']))
    return config


# solve-field options about the matching, not the image: with no others, the
# star list can be made by images/sources.py instead of inside solve-field.
_MATCHING_OPTIONS = {
    '--cpulimit', '--no-tweak', '--tweak-order', '--depth', '--objs', '--odds-to-solve',
    '--odds-to-tune-up', '--odds-to-reject', '--parity', '--code-tolerance', '--pixel-error',
    '--quad-size-min', '--quad-size-max', '--no-verify', '--crpix-center', '--crpix-x',
    '--crpix-y', '--guess-scale', '--backend-config', '--no-plots', '--overwrite',
}
# The options that change the star list itself, which sources.source_list does as told.
_STAR_LIST_OPTIONS = {'--no-remove-lines', '--uniformize'}
# solve-field's --uniformize default: cells the star list is spread over.
SPREAD_CELLS = 10


# solve-field's --scale-units.
SCALE_UNITS = ('degwidth', 'arcminwidth', 'arcsecperpix', 'focalmm')
# solve-field options that have their own field in SolveOptions.
_OPTION_FIELDS = {'--config': 'config', '--downsample': 'downsample', '--scale-low': 'scale_low',
                  '--scale-high': 'scale_high', '--scale-units': 'scale_units'}


def parse_angle(text: str | float, hours: bool = False) -> float:
    """Read an angle in degrees, or sexagesimal (``20:13:31``, ``+46 05``, ``20h13m31s``).

    Sexagesimal is hours with ``hours`` (a right ascension), else degrees; a
    plain number is degrees either way, as solve-field reads ``--ra`` and ``--dec``.

    >>> parse_angle('20:13:31', hours=True), parse_angle('+46:05'), parse_angle('-0:30')
    (303.379166..., 46.083333..., -0.5)
    >>> parse_angle('303.2', hours=True), parse_angle('20h13m31.5s', hours=True)
    (303.2, 303.38125)
    >>> parse_angle('46:75')
    Traceback (most recent call last):
    ...
    ValueError: '46:75': minutes and seconds must be below 60
    """
    if not isinstance(text, str):
        return float(text)
    value = text.strip()
    parts = [part for part in re.split(r'[:\shdm\'"s]+', value.lower()) if part]
    if len(parts) == 1 and not re.search(r'[:\shdm]', value.lower()):
        return float(value)
    if not 1 <= len(parts) <= 3:
        raise ValueError(f'{text!r}: not an angle (degrees, or sexagesimal such as 20:13:31)')
    try:
        numbers = [abs(float(part)) for part in parts]
    except ValueError:
        raise ValueError(f'{text!r}: not an angle (degrees, or sexagesimal such as 20:13:31)'
                         ) from None
    if any(number >= 60 for number in numbers[1:]):
        raise ValueError(f'{text!r}: minutes and seconds must be below 60')
    magnitude = sum(number / 60 ** index for index, number in enumerate(numbers))
    sign = -1 if value.startswith('-') else 1
    return sign * magnitude * (15 if hours else 1)


@dataclass
class SolveOptions:
    """Everything one plate solve is told, from ``panoptes fits solve`` down to solve-field.

    ``ra``, ``dec`` and ``radius`` are degrees (see :func:`parse_angle` for
    sexagesimal input); without them the RA-MNT/DEC-MNT headers are the hint.
    ``downsample``, ``scale_low``, ``scale_high`` and ``scale_units`` pass
    through to solve-field's options of those names; ``config`` is a backend
    config file and ``index_dirs`` directories of index files to use instead
    of the system's. ``solve_opts`` replaces the default options;
    ``extra_options`` (``{'--option': value}``, True for a flag) and
    ``extra_args`` are appended as given.

    >>> SolveOptions(ra=303.2)
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: solve_field: give both ra and dec, or neither
    """

    timeout: float = 30
    ra: float | None = None
    dec: float | None = None
    radius: float | None = None
    index_dirs: list[PathLike] = field(default_factory=list)
    config: PathLike | None = None
    downsample: int | None = None
    scale_low: float | None = None
    scale_high: float | None = None
    scale_units: str | None = None
    solve_opts: list[str] | None = None
    extra_options: dict[str, Any] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self):
        if (self.ra is None) != (self.dec is None):
            raise IllegalValue('solve_field: give both ra and dec, or neither')
        if self.scale_units is not None and self.scale_units not in SCALE_UNITS:
            raise IllegalValue(f'solve_field: scale_units {self.scale_units!r} is not one of '
                               f'{", ".join(SCALE_UNITS)}')
        bad = [key for key in self.extra_options if not key.startswith('-')]
        if bad:
            raise TypeError(f'solve-field options start with "--": {", ".join(bad)}')

    @classmethod
    def from_kwargs(cls, timeout: float = 30, solve_opts: list[str] | None = None,
                    args: Iterable = (), **kwargs) -> SolveOptions:
        """The options the manual's keyword arguments give: ``ra``, ``dec``, ``radius``,
        ``index_dir`` and solve-field options as ``'--option': value``.

        >>> SolveOptions.from_kwargs(ra=1, dec=2, **{'--config': 'b.cfg', '--no-tweak': True})
        SolveOptions(timeout=30, ra=1, dec=2, radius=None, index_dirs=[], config='b.cfg', ...)
        """
        # utils loads panoptes_cli.time: not at the top, where ``fits header`` would pay it.
        from panoptes_cli.utils import listify

        unknown = [key for key in kwargs
                   if not key.startswith('-') and key not in ('ra', 'dec', 'radius', 'index_dir')]
        if unknown:
            raise TypeError(f'solve_field() got unexpected keyword arguments: {", ".join(unknown)}')
        options = dict(kwargs)
        fields = {'ra': options.pop('ra', None), 'dec': options.pop('dec', None),
                  'radius': options.pop('radius', None),
                  'index_dirs': listify(options.pop('index_dir', None))}
        for flag, name in _OPTION_FIELDS.items():
            if flag in options:
                fields[name] = options.pop(flag)
        return cls(timeout=timeout, solve_opts=None if solve_opts is None else list(solve_opts),
                   extra_options=options, extra_args=[str(arg) for arg in args], **fields)

    def star_list(self, image_size: tuple[int, int]) -> dict | None:
        """How to make the star list here (``source_list``'s keywords), or None to leave it
        to solve-field: when options were given that act on the image (``solve_opts``,
        extra arguments, an option outside the matching ones), or the size is unknown.

        >>> SolveOptions().star_list((700, 700))
        {'downsample': 2, 'remove_lines': True, 'cells': 10}
        >>> SolveOptions(extra_options={'--uniformize': 0}).star_list((5208, 3476))
        {'downsample': 4, 'remove_lines': True, 'cells': 0}
        >>> SolveOptions(extra_options={'--pnm': 'a.pnm'}).star_list((700, 700)) is None
        True
        """
        if self.solve_opts is not None or self.extra_args or not all(image_size):
            return None
        if set(self.extra_options) - _MATCHING_OPTIONS - _STAR_LIST_OPTIONS:
            return None
        try:
            cells = int(self.extra_options.get('--uniformize', SPREAD_CELLS))
        except (TypeError, ValueError):
            return None  # solve-field says what is wrong with it
        return {'downsample': self.downsample or downsample_for(*image_size),
                'remove_lines': not self.extra_options.get('--no-remove-lines'), 'cells': cells}

    def arguments(self, image_size: tuple[int, int], hint: tuple[float, float] | None,
                  workdir: Path, star_list: bool = False) -> list[str]:
        """solve-field's options for one image, before its outputs and the file name.

        ``hint`` is where the image header says the mount pointed, used
        unless ``ra`` and ``dec`` are given. With ``star_list``, solve-field is
        given the star list :meth:`star_list` describes instead of the image.
        """
        extra_options = self.extra_options
        if self.solve_opts is None:
            arguments = [*DEFAULT_OPTIONS, '--cpulimit', str(max(1, round(self.timeout)))]
            downsample = self.downsample or downsample_for(*image_size)
        else:
            arguments = list(self.solve_opts)
            downsample = self.downsample
        if star_list:
            width, height = image_size
            arguments += ['--width', str(width), '--height', str(height),
                          '--no-remove-lines', '--uniformize', '0']
            downsample = None
            extra_options = {key: value for key, value in extra_options.items()
                             if key not in _STAR_LIST_OPTIONS}
        arguments += option_args({'--downsample': downsample, '--scale-low': self.scale_low,
                                  '--scale-high': self.scale_high,
                                  '--scale-units': self.scale_units})
        ra, dec = (self.ra, self.dec) if self.ra is not None else (hint or (None, None))
        if ra is not None:
            arguments += ['--ra', str(ra), '--dec', str(dec), '--radius',
                          str(self.radius if self.radius is not None else DEFAULT_RADIUS)]
        if self.index_dirs:
            arguments += ['--config', os.fspath(index_config(self.index_dirs, workdir))]
        if self.config is not None:
            arguments += ['--config', os.fspath(self.config)]
        return arguments + option_args(extra_options) + list(self.extra_args)

    @property
    def wants_hint(self) -> bool:
        """True unless the caller said where to look (``ra``/``dec``, or ``--ra`` as is)."""
        return self.ra is None and '--ra' not in self.extra_options
