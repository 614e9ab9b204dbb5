"""``panoptes db``: observatory records: insert, find, current."""

import contextlib
import enum
import json
import sys

import typer

from panoptes_cli.commands import options, output

NAME = 'db'
HELP = """\
Observatory records: insert, find, current.

Records are JSON: {"_id", "type", "date", "data"}, one per line in and out
(NDJSON), so commands pipe into each other.

Which store, highest precedence first: the --db-type and --db-name options,
then the PANOPTES_DB_TYPE and PANOPTES_DB_NAME environment variables, then
sqlite and panoptes. Stores live under $PANDIR; when PANDIR is not set, under
the per-user data directory $XDG_DATA_HOME/panoptes (~/.local/share/panoptes
when XDG_DATA_HOME is not set):

\b
  sqlite  <dir>/sqlite_store/<db-name>.sqlite: one file, many processes
          may write at once
  file    <dir>/json_store/<db-name>/<collection>.json: panoptes-utils'
          layout, one record per line, and current_<collection>.json

\b
Example:
  panoptes serial listen /dev/ttyACM0 | panoptes db insert weather --current
"""
app = typer.Typer(help=HELP, no_args_is_help=True)


class DbType(str, enum.Enum):
    sqlite = 'sqlite'
    file = 'file'


DB_TYPE = typer.Option(
    DbType.sqlite, '--db-type', envvar='PANOPTES_DB_TYPE', case_sensitive=False,
    help='Store type: sqlite (default) or file. Overrides PANOPTES_DB_TYPE.')
DB_NAME = typer.Option(
    'panoptes', '--db-name', envvar='PANOPTES_DB_NAME',
    help='Database name (letters, digits, _ - .). Overrides PANOPTES_DB_NAME.')
COLLECTION = typer.Argument(..., help='Collection name, e.g. weather (letters, digits, _ - .).')


def _open(db_type: DbType, db_name: str):
    from panoptes_cli.database.base import PanDB

    return PanDB(db_type=db_type.value, db_name=db_name)


@app.command()
@options.records_output
def insert(
    collection: str = COLLECTION,
    file: str = typer.Argument(
        '-', help="File of NDJSON records or one JSON document; '-' (the default) reads stdin."),
    current: bool = typer.Option(
        False, '--current', help='Also make each record the current one of its collection.'),
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
):
    """Store JSON records; print {"_id": ...} for each one stored.

    Input is NDJSON (one record per line, e.g. from `panoptes serial listen`)
    or pretty-printed JSON documents (each one a record). A dict with "type",
    "date" and "data" (as `panoptes db find` prints) is stored as that record,
    keeping its _id and date. Records are stored in small batches as they
    arrive; an id is printed only once its record is stored. A line that is
    not JSON is reported on stderr with its number and skipped: the rest are
    stored and the exit status is 1.

    Examples:

      panoptes serial listen /dev/ttyACM0 | panoptes db insert weather --current

      echo '{"temp": 12.5, "safe": true}' | panoptes db insert weather

      panoptes db find weather --db-type file | panoptes db insert weather
    """
    from panoptes_cli.database.stream import insert_stream

    db = _open(db_type, db_name)
    failures = 0
    printing = True
    source = None if file == '-' else file
    if source is None and output.environment().stdin_isatty:
        sys.stderr.write('Reading records from the terminal, one JSON per line; '
                         'end with Ctrl-D.\n')
    with open(file, 'rb') if source else contextlib.nullcontext(sys.stdin.buffer) as stream:
        for results in insert_stream(db, collection, stream, current=current):
            stored = []
            for result in results:
                if result.error is None:
                    stored.append(f'{{"_id": {json.dumps(result.id)}}}')
                else:
                    failures += 1
                    output.report_error(result.error, source)
            if stored and printing:
                try:
                    output.emit_text('\n'.join(stored))
                except output.StdoutClosed:
                    # Whoever read the ids went away; the records still need storing.
                    printing = False
    if failures:
        raise typer.Exit(1)


@app.command()
@options.records_output
def find(
    collection: str = COLLECTION,
    record_id: str | None = typer.Argument(None, help='The _id of one record to print.'),
    since: str | None = typer.Option(
        None, '--since', help='Only records dated at or after this UTC time: ISO-8601 '
        '(2024-05-01T22:00) or a duration before now (90s, 15m, 2h, 7d, 1w).'),
    until: str | None = typer.Option(
        None, '--until', help='Only records dated before this UTC time (same forms as --since).'),
    where: list[str] | None = typer.Option(
        None, '--where', '-w', help='KEY=VALUE: only records whose data has this value; '
        'a dotted KEY reaches nested fields, VALUE is read as JSON (12.5, true, null, "12.5") '
        'or else taken as text. Repeat to require several.'),
    limit: int | None = typer.Option(None, '--limit', '-n', min=0, help='Print at most N records.'),
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
):
    """Print records of a collection as NDJSON, newest first (or the one with ID).

    With ID, print that record, or fail (status 1) if there is none. Otherwise
    print every record that matches the filters; none matching is not an error.

    Examples:

      panoptes db find weather --since 2h --where safe=true

      panoptes db find weather --limit 1

      panoptes db find weather 0b6f0c53-6c43-4bd5-9fb0-98d0a9f6f4a3

      panoptes db find weather --since 2024-05-01 --until 2024-05-02

      panoptes db find weather -n 10 | jq .data.temp
    """
    from panoptes_cli.error import NotFound

    db = _open(db_type, db_name)
    found = db.find(collection, record_id, since=since, until=until, where=where, limit=limit,
                    parse=False)
    if record_id is None:
        for record in found:
            output.emit_record(record)
    elif found is None:
        raise NotFound(f'no record {record_id!r} in {collection} matches; '
                       f'check the id with: panoptes db find {collection} --limit 5')
    elif limit != 0:
        output.emit_record(found)


@app.command()
@options.records_output
def current(
    collection: str = COLLECTION,
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
):
    """Print the current record of a collection as JSON (status 1 if there is none).

    The current record is the last one inserted with --current.

    Examples:

      panoptes db current weather

      panoptes db current weather | jq .data.safe
    """
    from panoptes_cli.error import NotFound

    record = _open(db_type, db_name).get_current(collection, parse=False)
    if record is None:
        raise NotFound(f'no current {collection} record; '
                       f'insert one with: panoptes db insert {collection} --current')
    output.emit_json(record)


@app.command('clear-current')
def clear_current(
    collection: str = COLLECTION,
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
):
    """Forget the current record of a collection (its stored records stay).

    Examples:

      panoptes db clear-current weather
    """
    _open(db_type, db_name).clear_current(collection)
