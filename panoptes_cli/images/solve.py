"""Plate-solve FITS images with astrometry.net's ``solve-field``; read WCS with ``wcsinfo``.

:func:`solve_field` starts solve-field (a process with a wall-clock deadline
and a private working directory), :func:`get_solve_field` waits for it and
writes the solution into the image, and :func:`get_wcsinfo` reads a solution
back; :mod:`panoptes_cli.images.solve_batch` solves many at once. The manual documents them under
:mod:`panoptes_cli.images.fits`, which re-exports them. The options are
:class:`~panoptes_cli.images.solve_options.SolveOptions`; the process is
:class:`~panoptes_cli.images.solve_process.SolveFieldProcess`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from panoptes_cli.error import IllegalValue, NotFound, SolveError
from panoptes_cli.files import atomic_path
from panoptes_cli.images._fits_io import (
    TEMP_SUFFIX, PathLike, has_checksums, header_values, image_extension, image_hdu, image_size,
    reading, rewrite, structure)
from panoptes_cli.images._fits_structure import image_signatures
from panoptes_cli.images.packing import pack_into
from panoptes_cli.images.solve_options import SolveOptions, option_args
from panoptes_cli.images.solve_process import SolveFieldProcess, make_workdir
from panoptes_cli.programs import failure_message, find_program, run
from panoptes_cli.quantities import get_quantity_value


# Keywords of a WCS, removed from a header before a new solution goes in, so
# that no term of an older (e.g. higher-order SIP) solution survives.
_WCS_KEYWORD = re.compile(
    r'^(WCSAXES|WCSNAME|LONPOLE|LATPOLE|RADESYS|IMAGEW|IMAGEH|CTYPE\d|CRVAL\d|CRPIX\d|CUNIT\d|'
    r'CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+|(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+))$')


def parse_wcsinfo(text: str) -> dict:
    """Parse ``wcsinfo``'s ``key value`` lines, numbers as int or float.

    >>> parse_wcsinfo('pixscale 10.30324634\\nimagew 700\\nra_center_hms 20:12:50.628\\n')
    {'pixscale': 10.30324634, 'imagew': 700, 'ra_center_hms': '20:12:50.628'}
    """
    info = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(' ')
        if not key:
            continue
        value = value.strip()
        for kind in (int, float):
            try:
                info[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            info[key] = value
    return info


# The unit of each number wcsinfo prints (astrometry.net's meanings). The Mercator
# values are fractions of the map, but 0.2.29 gave them degrees and callers may
# rely on Quantities there, so they keep that label.
_WCSINFO_UNITS = {
    'pix': ('crpix0', 'crpix1', 'imagew', 'imageh'),
    'deg': ('crval0', 'crval1', 'ra_center', 'dec_center', 'orientation', 'orientation_center',
            'dec_center_d', 'ramin', 'ramax', 'decmin', 'decmax',
            'ra_min_merc', 'ra_max_merc', 'dec_min_merc', 'dec_max_merc', 'merc_diff'),
    'deg / pix': ('cd11', 'cd12', 'cd21', 'cd22'),
    'arcsec / pix': ('pixscale',),
    'deg2': ('fieldarea',),
    'hourangle': ('ra_center_h',),
    'min': ('ra_center_m',),
    's': ('ra_center_s',),
    'arcmin': ('dec_center_m',),
    'arcsec': ('dec_center_s',),
}
_UNIT_OF = {key: unit for unit, keys in _WCSINFO_UNITS.items() for key in keys}
# fieldw and fieldh are in whatever unit wcsinfo picked for the field's size.
_FIELD_UNITS = {'degrees': 'deg', 'arcminutes': 'arcmin', 'arcseconds': 'arcsec'}


def wcsinfo_quantities(info: Mapping) -> dict:
    """Return wcsinfo's parsed output with every number a float, as a Quantity where it has a unit.

    >>> info = wcsinfo_quantities({'pixscale': 10.3, 'imagew': 700, 'fieldw': 34.4,
    ...                            'fieldunits': 'arcminutes', 'parity': -1})
    >>> info['pixscale'], info['imagew'], info['fieldw'], info['parity']
    (<Quantity 10.3 arcsec / pix>, <Quantity 700. pix>, <Quantity 34.4 arcmin>, -1.0)
    """
    from astropy import units as u

    units = dict(_UNIT_OF)
    field_unit = _FIELD_UNITS.get(info.get('fieldunits'), 'deg')
    units.update(fieldw=field_unit, fieldh=field_unit)
    converted = {}
    for key, value in info.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
            if key in units:
                value = value * u.Unit(units[key])
        converted[key] = value
    return converted


def run_wcsinfo(path: Path, extension: int, options: Mapping) -> dict | None:
    """Run ``wcsinfo`` on one HDU; return its parsed output, or None if it found no WCS."""
    args = [find_program('wcsinfo'), *option_args(options)]
    if extension:
        args += ['-e', str(extension)]
    completed = run([*args, os.fspath(path)], capture_output=True, text=True)
    if completed.returncode != 0:
        return None
    return parse_wcsinfo(completed.stdout)


def remove_wcs(header) -> None:
    """Remove every WCS keyword from an astropy Header."""
    for keyword in [key for key in header if _WCS_KEYWORD.match(key)]:
        header.remove(keyword, ignore_missing=True, remove_all=True)


def wcs_cards(wcs_header) -> list:
    """The cards of a solution to put in an image header: the WCS, not the file's own.

    DATE is when solve-field wrote its file, not when the image was taken;
    the COMMENT and HISTORY lines would pile up with every solve.
    """
    skip = {'SIMPLE', 'BITPIX', 'NAXIS', 'EXTEND', 'DATE', 'COMMENT', 'HISTORY', ''}
    return [card for card in wcs_header.cards if card.keyword not in skip]


def summary(fits_file: str, info: Mapping, seconds: float, skipped: bool = False) -> dict:
    """The record ``panoptes fits solve`` prints for a solved file (``output``: the solved file).

    ``info`` holds Quantities (see :func:`wcsinfo_quantities`); the record has plain
    numbers, as :func:`solution` gives them.
    """
    return {
        'filename': fits_file,
        'solved': True,
        'skipped': skipped,
        'output': info.get('solved_fits_file', fits_file),
        **solution(info),
        'seconds': round(seconds, 3),
    }


def solution(info: Mapping) -> dict:
    """The plate solution in wcsinfo's answer, under the names every command uses.

    ``ra``, ``dec`` (centre) and ``rotation`` in degrees, ``pixel_scale`` in
    arcsec/pixel, ``field_width`` and ``field_height`` in degrees whatever
    unit wcsinfo chose for them.
    """
    return {
        'ra': _number(info.get('ra_center'), 'deg'),
        'dec': _number(info.get('dec_center'), 'deg'),
        'pixel_scale': _number(info.get('pixscale'), 'arcsec / pix'),
        'rotation': _number(info.get('orientation'), 'deg'),
        'field_width': _rounded(_number(info.get('fieldw'), 'deg')),
        'field_height': _rounded(_number(info.get('fieldh'), 'deg')),
    }


def _number(value, unit: str):
    """A Quantity's value in ``unit``; None stays None."""
    return None if value is None else get_quantity_value(value, unit)


def _rounded(value):
    return None if value is None else round(value, 6)


def failure(fits_file: str, error: BaseException, seconds: float) -> dict:
    """The record ``panoptes fits solve`` prints for a file that did not solve."""
    message = getattr(error, 'msg', None) or str(error) or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        message = f'{error.filename}: {error.strerror}'
    return {'filename': fits_file, 'solved': False, 'error': message,
            'seconds': round(seconds, 3)}


def _pointing_hint(fits_fname: PathLike, hdus: list) -> tuple[float, float] | None:
    """The mount's RA/Dec from the RA-MNT/DEC-MNT headers, if both are numbers."""
    header = header_values(fits_fname, hdus, image_extension(hdus))
    ra, dec = header.get('RA-MNT'), header.get('DEC-MNT')
    if isinstance(ra, int | float) and isinstance(dec, int | float) and not isinstance(
            ra, bool) and not isinstance(dec, bool):
        return float(ra), float(dec)
    return None


def solve_field(fname: PathLike, timeout: float = 15, solve_opts: list[str] | None = None,
                *args, **kwargs):
    """Start astrometry.net's ``solve-field`` on an image and return the running process.

    A low-level wrapper: :func:`get_solve_field` waits for the result and puts
    it in the file. solve-field works in a private temporary directory (all its
    temporary and output files go there, none beside the image); an fpacked
    image is unpacked into it first. The returned
    :class:`~panoptes_cli.images.SolveFieldProcess` is a
    ``subprocess.Popen`` whose ``communicate()`` and ``wait()`` stop
    solve-field and its helpers when ``timeout`` seconds of wall-clock time
    have passed (raising :class:`~panoptes_cli.error.Timeout`); use it in a
    ``with`` block, which removes the private directory. The solution, if one
    is found, is in its ``wcs_file``.

    Without ``solve_opts`` the options are the manual's (``--guess-scale
    --cpulimit <timeout> --no-verify --crpix-center --temp-axy`` and no
    outputs besides the WCS) with a downsampling that suits the image size
    (4 for a full frame, none for a 200-pixel crop), and the mount position in
    the RA-MNT/DEC-MNT headers as a hint (within ``radius``, 15 degrees by
    default) unless ``ra`` and ``dec`` are given.

    Fixed from the manual: boolean options are passed as bare flags (True)
    or left out (False); the timeout bounds the wall-clock time, not only the
    CPU time; solve-field's files stay out of the image's directory.

    Args:
        fname: The FITS image, plain or fpacked.
        timeout: Seconds solve-field may take, in wall-clock time (and CPU time).
        solve_opts: solve-field options to use instead of the defaults.
        *args: More solve-field arguments, appended as given.
        **kwargs: ``ra``, ``dec`` (degrees) and ``radius`` (degrees) for where
            to search; ``index_dir`` (a directory or a list of them) to use the
            index files there instead of the system's; and solve-field options
            as ``'--option': value`` (True for a flag), e.g. ``'--config': path``
            for a backend config file.

    Returns:
        The running solve-field process.

    Raises:
        ProgramNotFound: solve-field is not installed.
        NotAFitsFile: The image is missing, truncated or not FITS.
    """
    return start_solve(fname, SolveOptions.from_kwargs(timeout, solve_opts, args, **kwargs))


def start_solve(fname: PathLike, options: SolveOptions,
                find_stars: bool = False) -> SolveFieldProcess:
    """Start solve-field on an image with typed options; see :func:`solve_field`.

    With ``find_stars``, the stars are found here first (see
    :mod:`~panoptes_cli.images.sources`) where the options allow, and
    solve-field is given their list instead of the image: the same solution,
    a second sooner. :func:`solve_field` starts solve-field on the image, as
    its callers expect.
    """
    program = find_program('solve-field')
    source = Path(fname)
    hdus = structure(source)
    workdir = make_workdir()
    try:
        if any(hdu.compressed for hdu in hdus):
            # solve-field misreads some tile-compressed files (astrometry.net issue 182).
            if source.name.endswith('.fz'):
                solve_file = workdir / source.name[:-3]
            else:
                solve_file = workdir / f'{source.name}.fits'
            pack_into(source, solve_file, True, hdus)
        else:
            solve_file = source
        hint = _pointing_hint(source, hdus) if options.wants_hint else None
        wcs_file = workdir / f'{solve_file.stem}.wcs'
        size = image_size(hdus)
        started = time.monotonic()
        plan = _star_list_plan(hdus if solve_file == source else structure(solve_file),
                               options, size) if find_stars else None
        if plan is not None:
            from panoptes_cli.images.sources import source_list

            solve_input = workdir / f'{solve_file.stem}-stars.xyls'
            source_list(solve_file, solve_input, **plan, timeout=options.timeout)
        else:
            solve_input = solve_file
        arguments = [*options.arguments(size, hint, workdir, star_list=plan is not None),
                     '--dir', os.fspath(workdir), '--temp-dir', os.fspath(workdir),
                     '--wcs', os.fspath(wcs_file), '--overwrite']
        return SolveFieldProcess([program, *arguments, os.fspath(solve_input)],
                                 fits_file=source, solve_file=solve_file, wcs_file=wcs_file,
                                 workdir=workdir, timeout=options.timeout, started=started)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _star_list_plan(hdus: list, options: SolveOptions, size: tuple[int, int]) -> dict | None:
    """How to make solve-field's star list here, or None to let solve-field make it.

    Here only when solve-field would read a 2-D primary image with its default
    star finding and astrometry.net's image2xy and tabsort are installed (see
    images/sources.py: the same list, without two Python start-ups per image).
    """
    signatures = image_signatures(hdus)
    if not signatures or len(signatures[0][1]) != 2 or image_extension(hdus):
        return None
    if shutil.which('image2xy') is None or shutil.which('tabsort') is None:
        return None
    return options.star_list(size)


def _header_dict(header) -> dict:
    """A header's keywords and values, without COMMENT, HISTORY and blank cards."""
    return {card.keyword: card.value for card in header.cards
            if card.keyword not in ('COMMENT', 'HISTORY', '')}


_LONGITUDES = ('RA--', 'GLON', 'ELON', 'SLON', 'HLON')
_LATITUDES = ('DEC-', 'GLAT', 'ELAT', 'SLAT', 'HLAT')


def _solved_header(fits_fname: PathLike) -> dict | None:
    """The image's header if it has a celestial WCS (both sky axes), else None.

    Read from CTYPE1/CTYPE2 rather than through astropy.wcs, whose import
    alone would cost ``panoptes fits solve`` half a second.
    """
    hdus = structure(fits_fname)
    header = header_values(fits_fname, hdus, image_extension(hdus))
    axes = {str(header.get('CTYPE1', ''))[:4], str(header.get('CTYPE2', ''))[:4]}
    if axes & set(_LONGITUDES) and axes & set(_LATITUDES):
        return {key: value for key, value in header.items() if key not in ('COMMENT', 'HISTORY')}
    return None


def _write_solution(process, target: Path, replace: bool, overwrite: bool):
    """Put the WCS solve-field found into ``target``; return the new image header.

    In place, a plain file keeps its bytes but for the header; an fpacked one
    is repacked from the unpacked copy. A ``.new`` file is written plain, as
    solve-field writes it.
    """
    from astropy.io import fits

    with reading(process.wcs_file):
        cards = wcs_cards(fits.getheader(process.wcs_file))
    solved_header = None

    def change(hdul):
        nonlocal solved_header
        header = image_hdu(hdul).header
        remove_wcs(header)
        header.extend(cards, update=True)
        solved_header = header.copy()

    source = process.fits_file
    if replace and process.solve_file == source:
        rewrite(source, change)
        return solved_header
    with reading(process.solve_file), fits.open(process.solve_file,
                                                 do_not_scale_image_data=True) as hdul:
        change(hdul)
        checksum = has_checksums(hdul)
        if replace:
            solved = process.workdir / f'solved-{process.solve_file.name}'
            # A scratch file in the working directory: no need to sync it to disk.
            hdul.writeto(solved, checksum=checksum)
            with atomic_path(target, suffix=TEMP_SUFFIX, durable=True) as temp:
                pack_into(solved, temp, False, structure(solved))
        else:
            with atomic_path(target, overwrite, suffix=TEMP_SUFFIX, durable=True) as temp:
                hdul.writeto(temp, checksum=checksum)
    return solved_header


def get_solve_field(fname: PathLike, replace: bool = True, overwrite: bool = True,
                    timeout: float = 30, skip_solved: bool = True, **kwargs) -> dict:
    """Plate-solve an image with solve-field and write the solution into its header.

    Runs :func:`solve_field`, waits for it (at most ``timeout`` seconds of
    wall-clock time), and writes the WCS it found into the file's image
    header, atomically: in place with ``replace`` (an fpacked file is
    repacked), else into ``<name>.new`` beside it. An image that already has a
    celestial WCS is not solved again unless ``skip_solved=False``.

    Fixed from the manual: a solve that finds nothing raises SolveError
    (solve-field itself exits 0 then), a timeout stops solve-field and raises
    Timeout, and solve-field's files are cleaned up in every case. EQUINOX
    and the image's other keywords are kept as they were (solve-field's own
    ``.new`` file renames some of them).

    >>> import shutil
    >>> from panoptes_cli.images.fits import getwcs
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> tmp_path = getfixture('tmp_path')
    >>> fits_fn = shutil.copy(SHARED / 'unsolved.fits', tmp_path)
    >>> config = tmp_path / 'backend.cfg'
    >>> _ = config.write_text(f"index {SHARED / 'astrometry' / 'index-kic8462852-tycho2-p7.fits'}")

    Perform the solve, then show the solved filename and where it points:

    >>> solve_info = get_solve_field(fits_fn, **{'--config': config})
    >>> solve_info['solved_fits_file']
    '.../unsolved.fits'
    >>> solve_info['ra_center'].round(1), solve_info['dec_center'].round(1)
    (<Quantity 303.2 deg>, <Quantity 46. deg>)
    >>> getwcs(fits_fn).is_celestial
    True

    Pass a suggested location, and solve-field options (True for a flag):

    >>> solve_kwargs = {'--config': config, '--pnm': tmp_path / 'awesome.pnm', '--no-tweak': True}
    >>> solve_info = get_solve_field(fits_fn, ra=303.2, dec=46.0, radius=5, skip_solved=False,
    ...                              **solve_kwargs)
    >>> os.path.exists(tmp_path / 'awesome.pnm')
    True

    Args:
        fname: The FITS image, plain or fpacked.
        replace: Write the solution into ``fname``; if False, into ``<name>.new``.
        overwrite: Replace an existing ``.new`` file (it must be True with ``replace``).
        timeout: Seconds the solve may take, wall-clock.
        skip_solved: Return an already solved image's WCS without solving again.
        **kwargs: Passed to :func:`solve_field`.

    Returns:
        The solved image's header keywords, what ``wcsinfo`` says about the
        solution (``ra_center``, ``dec_center``, ``pixscale``, ``orientation``,
        ``fieldw``, ``fieldh``, ``fieldunits`` ...), ``solved_fits_file``, and
        ``skipped`` (True if the image had been solved before).

    Raises:
        SolveError: solve-field found no solution.
        Timeout: It ran out of time.
        ProgramNotFound: solve-field or wcsinfo is not installed.
        NotAFitsFile: The image is missing, truncated or not FITS.
        FileExistsError: The ``.new`` file exists and ``overwrite`` is False.
    """
    return solve_file(fname, SolveOptions.from_kwargs(timeout, **kwargs), replace=replace,
                      overwrite=overwrite, skip_solved=skip_solved)


def solve_file(fname: PathLike, options: SolveOptions, replace: bool = True,
               overwrite: bool = True, skip_solved: bool = True) -> dict:
    """Plate-solve one image with typed options; see :func:`get_solve_field`."""
    source = Path(fname)
    if replace and not overwrite:
        raise IllegalValue(f'{source}: replacing the file with its solution needs overwrite=True')
    solved_header = _solved_header(source) if skip_solved else None
    if solved_header is not None:
        info = {**solved_header, **get_wcsinfo(source)}
        return {**info, 'solved_fits_file': os.fspath(source), 'skipped': True}
    target = source if replace else (
        source.with_name(source.name[:-3]) if source.name.endswith('.fz') else source
    ).with_suffix('.new')
    if not overwrite and target.exists():
        raise FileExistsError(17, 'File exists', os.fspath(target))

    with start_solve(source, options, find_stars=True) as process:
        # Writing the solution needs astropy: importing it now, while solve-field
        # works, takes half a second off a one-file ``panoptes fits solve``.
        import astropy.io.fits  # noqa: F401

        output, _ = process.communicate()
        if not process.wcs_file.exists():
            if process.returncode:
                why = f'solve-field failed: {failure_message(output, process.returncode)}'
            else:
                why = ('no solution found; check that the index files cover this field and '
                       'scale (index_dir or a backend config)')
            raise SolveError(f'{source}: {why}')
        wcs_info = wcsinfo_quantities(run_wcsinfo(process.wcs_file, 0, {}) or {})
        header = _write_solution(process, target, replace, overwrite)
    return {**_header_dict(header), **wcs_info, 'solved_fits_file': os.fspath(target),
            'skipped': False}


def get_wcsinfo(fits_fname: PathLike, **kwargs) -> dict:
    """Return what astrometry.net's ``wcsinfo`` says about the WCS of a solved image.

    Reads the image HDU (extension 1 of an fpacked file). Numbers come back as
    astropy Quantities where they have a unit (degrees, pixels, arcsec/pixel...)
    and floats where they do not, as in 0.2.29; wcsinfo's text values (``fieldunits``,
    ``ra_center_hms``...) come too, as strings, and ``wcs_file`` names the file.

    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> info = get_wcsinfo(SHARED / 'solved.fits.fz')
    >>> info['ra_center'].round(2), info['dec_center'].round(2), info['pixscale'].round(1)
    (<Quantity 303.21 deg>, <Quantity 46.02 deg>, <Quantity 10.3 arcsec / pix>)
    >>> info['imagew'], info['fieldunits']
    (<Quantity 700. pix>, 'degrees')

    Fixed from the manual: fpacked files work, the image size comes from the
    image (not from the compressed table), and an image without a WCS raises
    NotFound instead of returning an empty dict.

    Args:
        fits_fname: A plate-solved FITS image, plain or fpacked.
        **kwargs: wcsinfo options as ``'-x': value``.

    Returns:
        wcsinfo's keys and values (``ra_center``, ``dec_center`` and
        ``orientation`` in degrees, ``pixscale`` in arcsec/pixel, ``fieldw``
        and ``fieldh`` in ``fieldunits``, ...), with units as above.

    Raises:
        ProgramNotFound: wcsinfo is not installed.
        NotAFitsFile: The file is missing, truncated or not FITS.
        NotFound: The image has no WCS.
    """
    source = Path(fits_fname)
    hdus = structure(source)
    width, height = image_size(hdus)
    options = dict(kwargs)
    if width and height:
        options.setdefault('-W', width)
        options.setdefault('-H', height)
    info = run_wcsinfo(source, image_extension(hdus), options)
    if info is None:
        raise NotFound(f'{source}: no WCS in the header (not plate-solved yet)')
    return {**wcsinfo_quantities(info), 'wcs_file': os.fspath(source)}
