"""The options every command group shares, each defined once.

A flag means the same thing in every command that takes it:

    FILE...          many files; ``-`` reads names (or NDJSON records) from stdin
    -o/--output-dir  the directory outputs are written to
    -j/--jobs        files worked on at once, at least 1
    --scheduler      run the files as tasks on a Dask cluster instead of here
    -n/--limit       stop after N results
    --overwrite      replace an output that already exists, and nothing else
    --timeout        seconds before giving up (no short form)
    --csv/--tsv/--table   records as spreadsheet rows or a table (``records_output``)
    -r/--raw         strings without JSON quotes (``raw_output``)

Use the constants as parameter defaults (``jobs: int = options.JOBS``) and
the decorators on commands, as sqlite-utils shares its options.
"""

import functools
import inspect
import os
from pathlib import Path

import typer

from panoptes_cli.commands import output

STDIN_HELP = ("'-' reads the names from stdin, one a line, or NDJSON records from another "
              'panoptes command (their "output", else "filename")')


#: The keys of the records the commands print: each name has one meaning everywhere.
#: The README's "How every command behaves" lists them; the contract test holds every
#: command's records to them.
RECORD_KEYS = {
    'filename': 'the input file, as it was given',
    'output': 'the file the command wrote (null when it wrote none)',
    'error': 'why this item failed',
    'seconds': 'how long the item took',
    'hdu': 'the index of the HDU read',
    'header': 'FITS keywords and their values',
    'exif': "a raw frame's EXIF tags, named as exiftool names them",
    'solved': 'whether the plate solve succeeded',
    'skipped': 'the file was solved already: nothing done',
    'ra': 'right ascension of the field centre, degrees',
    'dec': 'declination of the field centre, degrees',
    'pixel_scale': 'arcseconds per pixel',
    'rotation': 'position angle of the image, degrees',
    'field_width': 'field of view across, degrees',
    'field_height': 'field of view up, degrees',
    'wcsinfo': "all astrometry.net's wcsinfo gives",
    'link': 'the symbolic link pointed at the output',
    'vollath_F4': 'the focus metric (bigger is sharper)',
    'axis': 'the axis a metric was measured along (null: both)',
    'channels': 'per colour channel (r, g, b) values',
    'mean': 'the mean over the channels',
    'step': 'the pipeline step an event is about',
    'timestamp': 'when a reading arrived (ISO-8601 UTC)',
    'port': 'the serial port',
    'data': "the reading or record's own JSON object",
    'line': 'a raw line of text from a device',
    '_id': "a stored record's id",
    'type': "a stored record's collection",
    'date': "a stored record's date (ISO-8601 UTC)",
}


def files(what: str):
    """The FILE... argument: ``what`` (e.g. 'FITS files'), many of them, or '-'."""
    return typer.Argument(..., metavar='FILE...', show_default=False,
                          help=f'{what}; {STDIN_HELP}.')


JOBS = typer.Option(
    None, '--jobs', '-j', min=1, show_default=False,
    help='Files worked on at once [default: the number of cores].')

def _scheduler_address(value: str | None) -> str | None:
    """Check --scheduler (or PANOPTES_DASK_SCHEDULER): a malformed address is a usage error."""
    from panoptes_cli.cluster import scheduler_address

    try:
        return scheduler_address(value)
    except ValueError as exc:
        raise typer.BadParameter(exc.msg) from None


SCHEDULER = typer.Option(
    None, '--scheduler', metavar='ADDRESS', callback=_scheduler_address, show_default=False,
    help='Run each file as a task on the Dask cluster of this scheduler (tcp://HOST:8786; '
         'also PANOPTES_DASK_SCHEDULER) instead of here; --jobs is then the cluster\'s. '
         'Workers must see the files under the same paths.')

OUTPUT_DIR = typer.Option(
    None, '--output-dir', '-o', file_okay=False, exists=True, show_default=False,
    help='Write the outputs into this existing directory [default: beside each input].')

OVERWRITE = typer.Option(False, '--overwrite', help='Replace an output that already exists.')

LIMIT = typer.Option(None, '--limit', '-n', min=1, show_default=False,
                     help='Stop after N results [default: no limit].')


def timeout(default: float | None, help: str):
    """The --timeout option (seconds; no short form, so -t is free for --title)."""
    return typer.Option(default, '--timeout', min=0.001, show_default=default is not None,
                        help=help)


def jobs_or_cores(jobs: int | None) -> int:
    """The --jobs value, or the number of cores when it was not given."""
    return jobs or os.cpu_count() or 1


def _add_parameters(extra: dict[str, tuple[type, object]], wrap):
    """Decorate a command with more parameters, which ``wrap(function, **values)`` consumes."""

    def decorate(function):
        signature = inspect.signature(function)
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                   annotation=annotation)
                 for name, (annotation, default) in extra.items()]

        @functools.wraps(function)
        def command(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in extra}
            return wrap(lambda: function(*args, **kwargs), **values)

        command.__signature__ = signature.replace(
            parameters=[*signature.parameters.values(), *added])
        command.__annotations__ = {**function.__annotations__,
                                   **{name: annotation for name, (annotation, _) in extra.items()}}
        return command

    return decorate


def _records_as(run, csv: bool, tsv: bool, table: bool):
    chosen = [name for name, on in (('--csv', csv), ('--tsv', tsv), ('--table', table)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter('choose one of ' + ', '.join(chosen), param_hint=chosen[0])
    format = {'--csv': output.Format.csv, '--tsv': output.Format.tsv,
              '--table': output.Format.table}.get(chosen[0] if chosen else None,
                                                  output.Format.json)
    with output.output_mode(format):
        return run()


records_output = _add_parameters({
    'csv': (bool, typer.Option(False, '--csv', help='Print CSV instead of JSON: one row a '
                                                    'record, nested keys as dotted columns.')),
    'tsv': (bool, typer.Option(False, '--tsv', help='Print tab-separated values (as --csv).')),
    'table': (bool, typer.Option(False, '--table', help='Print a table for people (as --csv).')),
}, _records_as)
"""Decorator: the command prints records, and takes --csv, --tsv and --table."""


def _raw(run, raw: bool):
    with output.output_mode(raw=raw):
        return run()


raw_output = _add_parameters({
    'raw': (bool, typer.Option(False, '--raw', '-r', help='Print a string value without '
                                                          'JSON quotes (as jq -r does).')),
}, _raw)
"""Decorator: the command prints one value, and takes -r/--raw."""


def output_path(output_dir: Path | None, source: str, suffix: str) -> str | None:
    """Return DIR/<source's name with ``suffix``>, or None when no --output-dir was given."""
    if output_dir is None:
        return None
    name = Path(source).name
    for extension in ('.fz', '.fits', '.cr2', '.CR2'):
        name = name.removesuffix(extension)
    return os.fspath(output_dir / f'{name}{suffix}')
