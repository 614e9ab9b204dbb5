"""``panoptes fits``: Inspect, compress and plate-solve FITS frames."""

from enum import Enum

import typer

from panoptes_cli.commands import options, output

NAME = 'fits'
app = typer.Typer(help='Inspect, compress and plate-solve FITS frames.', no_args_is_help=True)

FILES = options.files('FITS files')


def _extension(value: str):
    """Read --ext: an HDU number, else an EXTNAME."""
    from panoptes_cli.serializers import parse_typed_value

    number = parse_typed_value(value)
    return number if isinstance(number, int) and not isinstance(number, bool) else value


@app.command()
@options.records_output
def header(
    files: list[str] = FILES,
    keys: list[str] = typer.Option(None, '--key', '-k', show_default=False,
                                   help="Print only this keyword; wildcards such as 'RA*' "
                                        'match many (repeat for more).'),
    ext: list[str] = typer.Option(None, '--ext', '-e', show_default=False,
                                  help='Read this HDU (number or EXTNAME) instead of the '
                                       'image one (repeat for more).'),

    scheduler: str = options.SCHEDULER,
):
    """Print FITS headers as NDJSON, one object per file (and per --ext).

    Each line is {"filename": ..., "hdu": ..., "header": {...}}. The header
    is the image's: extension 1 of an fpacked .fz file, else the primary
    one. With -k, only those keywords (null when missing). An extension a
    file does not have gives "header": null and a warning, not a failure.

    Examples:

    \b
      panoptes fits header unsolved.fits
      panoptes fits header -k IMAGEID -k EXPTIME night/*.fits.fz
      panoptes fits header -k 'RA*' -k 'DEC*' --csv night/*.fits.fz
      panoptes fits header -e 0 -e 1 solved.fits.fz
      find night -name '*.fz' | panoptes fits header -k FIELD -
    """
    import contextlib
    from functools import partial

    from panoptes_cli.images.fits import header_records

    extensions = [_extension(value) for value in ext or []] or [None]
    # Headers are quick to read: here one file at a time, in this process.
    runner = output.runner_for(1, None, scheduler)
    task = partial(header_records, keywords=keys or None, extensions=extensions)
    with output.Batch() as batch, contextlib.closing(
            runner.map_unordered(task, batch.inputs(files))) as outcomes:
        for outcome in outcomes:
            with batch.item(outcome.item):
                if outcome.error is not None:
                    raise outcome.error
                for result in outcome.value:
                    if isinstance(result, BaseException):
                        batch.fail(result, outcome.item)
                        continue
                    if result['header'] is None:
                        output.note(f"Warning: {outcome.item}: no extension {result['hdu']!r}; "
                                    'its header is null')
                    output.emit_record(result)


def _pack_all(files: list[str], unpack: bool, overwrite: bool, keep_original: bool,
              jobs: int | None, scheduler: str | None):
    from functools import partial

    from panoptes_cli.images.fits import fpack

    output.run_batch(files, partial(fpack, unpack=unpack, overwrite=overwrite,
                                    keep_original=keep_original),
                     jobs=jobs, description='Unpacking' if unpack else 'Packing',
                     record=lambda path, packed: {'filename': path, 'output': packed},
                     scheduler=scheduler)


@app.command()
@options.records_output
def pack(
    files: list[str] = FILES,
    overwrite: bool = options.OVERWRITE,
    keep_original: bool = typer.Option(False, '--keep-original',
                                       help='Keep each input file instead of removing it.'),
    jobs: int = options.JOBS,
    scheduler: str = options.SCHEDULER,
):
    """Compress FITS files losslessly: x.fits becomes x.fits.fz.

    Uses cfitsio's fpack when installed, astropy's tile compression (Rice,
    readable by funpack) otherwise. The original is removed only after the
    packed file is complete and on disk. Prints {"filename", "output"} per
    file as NDJSON.

    Examples:

    \b
      panoptes fits pack night/*.fits
      panoptes fits pack --keep-original flat.fits
    """
    _pack_all(files, unpack=False, overwrite=overwrite, keep_original=keep_original, jobs=jobs,
              scheduler=scheduler)


@app.command()
@options.records_output
def unpack(
    files: list[str] = FILES,
    overwrite: bool = options.OVERWRITE,
    keep_original: bool = typer.Option(False, '--keep-original',
                                       help='Keep each .fz file instead of removing it.'),
    jobs: int = options.JOBS,
    scheduler: str = options.SCHEDULER,
):
    """Decompress fpacked FITS files: x.fits.fz becomes x.fits.

    Uses cfitsio's funpack when installed, astropy otherwise. The .fz file is
    removed only after the unpacked file is complete and on disk. Prints
    {"filename", "output"} per file as NDJSON.

    Examples:

    \b
      panoptes fits unpack solved.fits.fz
      panoptes fits unpack --keep-original night/*.fits.fz
    """
    _pack_all(files, unpack=True, overwrite=overwrite, keep_original=keep_original, jobs=jobs,
              scheduler=scheduler)


class ScaleUnits(str, Enum):
    degwidth = 'degwidth'
    arcminwidth = 'arcminwidth'
    arcsecperpix = 'arcsecperpix'
    focalmm = 'focalmm'


def _angle(value: str | None, hours: bool, limit: float) -> float | None:
    from panoptes_cli.images.solve_options import parse_angle

    if value is None:
        return None
    try:
        angle = parse_angle(value, hours=hours)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not -limit <= angle <= limit or (hours and angle < 0):
        raise typer.BadParameter(f'{value!r} is out of range')
    return angle


def _right_ascension(value: str | None) -> float | None:
    return _angle(value, hours=True, limit=360)


def _declination(value: str | None) -> float | None:
    return _angle(value, hours=False, limit=90)


@app.command()
@options.records_output
def solve(
    files: list[str] = FILES,
    ra: str = typer.Option(None, '--ra', show_default=False, callback=_right_ascension,
                           help='Search around this RA: degrees, or hours as 20:13:31; '
                                'default: the RA-MNT header.'),
    dec: str = typer.Option(None, '--dec', show_default=False, callback=_declination,
                            help='Search around this Dec: degrees, or +46:05:00; '
                                 'default: DEC-MNT.'),
    radius: float = typer.Option(None, '--radius', show_default=False,
                                 help='Search radius in degrees around the hint [default: 15].'),
    timeout: float = options.timeout(60, 'Seconds (wall-clock) one file may take.'),
    jobs: int = options.JOBS,
    overwrite: bool = typer.Option(False, '--overwrite',
                                   help='Replace an existing solution: solve again files '
                                        'that already have a WCS.'),
    index_dir: list[str] = typer.Option(None, '--index-dir', show_default=False,
                                        help='Use the index files in this directory '
                                             '(repeat for more) instead of the system ones.'),
    config: str = typer.Option(None, '--config', show_default=False,
                               help='Use this astrometry.net backend config file.'),
    downsample: int = typer.Option(None, '--downsample', min=1, show_default=False,
                                   help="solve-field's --downsample [default: 4, 2 or 1 by "
                                        'image size].'),
    scale_low: float = typer.Option(None, '--scale-low', min=0, show_default=False,
                                    help="solve-field's --scale-low: the smallest scale to try."),
    scale_high: float = typer.Option(None, '--scale-high', min=0, show_default=False,
                                     help="solve-field's --scale-high: the largest scale to try."),
    scale_units: ScaleUnits = typer.Option(None, '--scale-units', show_default=False,
                                           help="solve-field's --scale-units for --scale-low "
                                                'and --scale-high [default: degwidth].'),

    scheduler: str = options.SCHEDULER,
):
    """Plate-solve FITS files with astrometry.net and write the WCS into each.

    Solves in parallel and prints one NDJSON result per file as it finishes:
    filename, solved, output (the solved file), ra and dec of the centre (degrees),
    pixel_scale (arcsec/pixel), rotation (degrees), field_width and
    field_height (degrees), skipped (already solved), seconds. A file that
    does not solve gives {"solved": false, "error": ...} and the exit status
    is 1. fpacked files are solved and stay fpacked.

    Examples:

    \b
      panoptes fits solve night/*.fits.fz
      panoptes fits solve --timeout 120 --jobs 2 --index-dir ~/astrometry unsolved.fits
      panoptes fits solve --ra 303.2 --dec 46.0 --radius 5 tiny.fits
      panoptes fits solve --ra 20:13:31 --dec +46:05 --scale-units arcsecperpix \\
          --scale-low 9 --scale-high 12 unsolved.fits
    """
    import contextlib

    from panoptes_cli.images.solve_batch import solve_fields
    from panoptes_cli.images.solve_options import SolveOptions

    if (ra is None) != (dec is None):
        raise typer.BadParameter('give both --ra and --dec, or neither')
    solve_options = SolveOptions(timeout=timeout, ra=ra, dec=dec, radius=radius,
                                 index_dirs=index_dir or [], config=config,
                                 downsample=downsample, scale_low=scale_low,
                                 scale_high=scale_high,
                                 scale_units=None if scale_units is None else scale_units.value)
    total = None if '-' in files else len(files)
    with output.Batch() as batch, output.progress(total, 'Solving') as advance, \
            contextlib.closing(solve_fields(batch.inputs(files), jobs=jobs, options=solve_options,
                                            skip_solved=not overwrite,
                                            scheduler=scheduler)) as results:
        for result in results:
            output.emit_record(result)
            if not result['solved']:
                batch.fail(ValueError(result['error']))
            advance()


@app.command()
@options.records_output
def wcs(
    files: list[str] = options.files('Plate-solved FITS files'),
):
    """Print the WCS of plate-solved FITS files as NDJSON, one object per file.

    Each line is {"filename", "ra", "dec" (centre, degrees), "pixel_scale"
    (arcsec/pixel), "rotation" (degrees), "field_width", "field_height"
    (degrees), "wcsinfo": {...}}: the names fits solve prints, then all
    that astrometry.net's wcsinfo gives (ra_center, pixscale, fieldw,
    imagew, ...).

    Examples:

    \b
      panoptes fits wcs solved.fits.fz
      panoptes fits wcs --csv night/*.fits.fz
      panoptes fits solve night/*.fits | panoptes fits wcs -
    """
    from panoptes_cli.images.solve import get_wcsinfo, solution
    from panoptes_cli.quantities import get_quantity_value

    with output.Batch() as batch:
        for path in batch.inputs(files):
            with batch.item(path):
                info = get_wcsinfo(path)
                info.pop('wcs_file', None)
                # The core gives Quantities; JSON gets their numbers, in the units named above.
                output.emit_record({'filename': path, **solution(info), 'wcsinfo': {
                    key: get_quantity_value(value) for key, value in info.items()}})
