"""``panoptes db``: observatory records: insert, find, current, prune, sync."""

import contextlib
import enum
import json
import sys

import typer

from panoptes_cli.commands import options, output

NAME = 'db'
HELP = """\
Observatory records: insert, find, current, prune, and sync to a fleet's PostgreSQL.

Records are JSON: {"_id", "type", "date", "data"}, one per line in and out
(NDJSON), so commands pipe into each other.

Which store, highest precedence first: the --db-type, --db-name and --db-url
options, then the PANOPTES_DB_TYPE, PANOPTES_DB_NAME and PANOPTES_DB_URL
environment variables, then sqlite and panoptes. Local stores live under
$PANDIR; when PANDIR is not set, under the per-user data directory
$XDG_DATA_HOME/panoptes (~/.local/share/panoptes when XDG_DATA_HOME is not set):

\b
  sqlite    <dir>/sqlite_store/<db-name>.sqlite: one file, many processes
            may write at once
  file      <dir>/json_store/<db-name>/<collection>.json: panoptes-utils'
            layout, one record per line, and current_<collection>.json
  postgres  the PostgreSQL server at --db-url (postgresql://user@host/dbname),
            schema <db-name>: a fleet's records in one place

\b
Examples:
  panoptes serial listen /dev/ttyACM0 | panoptes db insert weather --current
  panoptes db sync --to postgresql://pan@fleet.example.org/panoptes
"""
app = typer.Typer(help=HELP, no_args_is_help=True)


class DbType(str, enum.Enum):
    sqlite = 'sqlite'
    file = 'file'
    postgres = 'postgres'


def _postgres_url(value: str | None) -> str | None:
    """Check a PostgreSQL URL on the command line: a malformed one is a usage error."""
    if value is None:
        return None
    from panoptes_cli.database.postgres import check_url
    from panoptes_cli.error import IllegalValue

    try:
        return check_url(value)
    except IllegalValue as err:
        raise typer.BadParameter(err.msg) from None


DB_TYPE = typer.Option(
    DbType.sqlite, '--db-type', envvar='PANOPTES_DB_TYPE', case_sensitive=False,
    help='Store type: sqlite, file or postgres.')
DB_NAME = typer.Option(
    'panoptes', '--db-name', envvar='PANOPTES_DB_NAME',
    help='Database name (letters, digits, _ - .); the schema on postgres.')
DB_URL = typer.Option(
    None, '--db-url', envvar='PANOPTES_DB_URL', callback=_postgres_url, show_default=False,
    help='The server of --db-type postgres, as postgresql://user@host/dbname '
    '(also :password, :port).')
COLLECTION = typer.Argument(..., help='Collection name, e.g. weather (letters, digits, _ - .).')
MAX_SECONDS = typer.Option(None, '--max-seconds', min=0, show_default=False,
                           help='Stop after this many seconds.')


def _open(db_type: DbType, db_name: str, db_url: str | None = None, create: bool = True,
          collection: str | None = None):
    """Open the store; with ``create`` False, one that does not exist is an error.

    ``collection`` is checked first: a bad name is reported, not a missing store.
    """
    from panoptes_cli.database.base import PanDB
    from panoptes_cli.database.records import validate_name

    _option(lambda name: validate_name(name, 'database'), db_name, '--db-name')
    if collection is not None:
        _option(validate_name, collection, 'COLLECTION')

    if db_type is DbType.postgres:
        if not db_url:
            raise typer.BadParameter('the postgres store needs a server: pass --db-url '
                                     'postgresql://user@host/dbname or set PANOPTES_DB_URL',
                                     param_hint="'--db-url'")
        return PanDB(db_type='postgres', db_name=db_name, url=db_url, create=create)
    return PanDB(db_type=db_type.value, db_name=db_name, create=create)


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
    db_url: str | None = DB_URL,
):
    """Store JSON records; print {"_id": ...} for each one stored.

    Input is NDJSON (one record per line, e.g. from `panoptes serial listen`)
    or pretty-printed JSON documents (each one a record); a JSON array is one
    record per element. A dict with "type",
    "date" and "data" (as `panoptes db find` prints) is stored as that record,
    keeping its _id and date. Records are stored in small batches as they
    arrive; an id is printed only once its record is stored. A line that is
    not JSON is reported on stderr with its number and skipped: the rest are
    stored and the exit status is 1.

    Examples:

    \b
      panoptes serial listen /dev/ttyACM0 | panoptes db insert weather --current
      echo '{"temp": 12.5, "safe": true}' | panoptes db insert weather
      panoptes db find weather --db-type file | panoptes db insert weather
      echo '[{"temp": 12.5}, {"temp": 13.0}]' | panoptes db insert weather
    """
    from panoptes_cli.database.stream import insert_stream

    db = _open(db_type, db_name, db_url, collection=collection)
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
        None, '--where', '-w', help='KEY=VALUE, KEY!=VALUE, KEY>VALUE, KEY>=VALUE, KEY<VALUE '
        'or KEY<=VALUE on the data: a dotted KEY reaches nested fields, VALUE is read as JSON '
        '(12.5, true, null, "12.5") or else taken as text; > and < compare numbers with '
        'numbers, text with text. A record without KEY never matches. Repeat to require '
        'several.'),
    limit: int | None = typer.Option(None, '--limit', '-n', min=0, help='Print at most N records.'),
    fields: str | None = typer.Option(
        None, '--fields', show_default=False,
        help='Comma-separated fields of the data to keep (dotted for nested ones), e.g. '
        'temp,wind.speed; _id, type and date stay.'),
    follow: bool = typer.Option(
        False, '--follow', help='Print records as they are stored from now on, oldest first, '
        'until Ctrl-C (or --max-seconds); the filters apply.'),
    max_seconds: float | None = MAX_SECONDS,
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
    db_url: str | None = DB_URL,
):
    """Print records of a collection as NDJSON, newest first (or the one with ID).

    With ID, print that record, or fail (status 1) if there is none. Otherwise
    print every record that matches the filters; none matching is not an error.
    A store that does not exist is an error (status 1). --where, --since,
    --until and --limit run inside SQLite and PostgreSQL; the file store reads
    the newest records from the end of its files.

    Examples:

    \b
      panoptes db find weather --since 2h --where safe=true
      panoptes db find weather --where 'temp>20' --where 'status!=ok' --fields temp,status
      panoptes db find weather --follow --where 'wind.speed>=10'
      panoptes db find weather --limit 1
      panoptes db find weather 0b6f0c53-6c43-4bd5-9fb0-98d0a9f6f4a3
      panoptes db find weather --since 2024-05-01 --until 2024-05-02
      panoptes db find weather -n 10 | jq .data.temp
    """
    from panoptes_cli.database.query import parse_fields, parse_where, project
    from panoptes_cli.database.records import parse_time_bound
    from panoptes_cli.error import NotFound

    wanted = _option(parse_fields, fields, '--fields') if fields is not None else None
    if follow and record_id is not None:
        raise typer.BadParameter('--follow prints new records: give no ID', param_hint="'--follow'")
    if max_seconds is not None and not follow:
        raise typer.BadParameter('--max-seconds bounds --follow', param_hint="'--max-seconds'")
    # Bad filters are reported before a missing store.
    _option(parse_where, where, '--where')
    for bound, name in ((since, '--since'), (until, '--until')):
        if bound is not None:
            _option(parse_time_bound, bound, name)
    db = _open(db_type, db_name, db_url, create=False, collection=collection)
    if follow:
        found = db.follow(collection, since=since, until=until, where=where,
                          seconds=max_seconds, parse=False)
    else:
        found = db.find(collection, record_id, since=since, until=until, where=where,
                        limit=limit, parse=False)
    if record_id is None:
        for record in found:
            output.emit_record(project(record, wanted))
    elif found is None:
        raise NotFound(f'no record {record_id!r} in {collection} matches; '
                       f'check the id with: panoptes db find {collection} --limit 5')
    elif limit != 0:
        output.emit_record(project(found, wanted))


def _option(parse, value, name: str):
    """Parse an option's value with the core's parser; its IllegalValue is a usage error."""
    from panoptes_cli.error import IllegalValue

    try:
        return parse(value)
    except IllegalValue as err:
        raise typer.BadParameter(err.msg, param_hint=f"'{name}'") from None


@app.command()
@options.records_output
def current(
    collection: str = COLLECTION,
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
    db_url: str | None = DB_URL,
):
    """Print the current record of a collection as JSON (status 1 if there is none).

    The current record is the last one inserted with --current.

    Examples:

    \b
      panoptes db current weather
      panoptes db current weather | jq .data.safe
    """
    from panoptes_cli.error import NotFound

    record = _open(db_type, db_name, db_url, create=False,
                   collection=collection).get_current(collection, parse=False)
    if record is None:
        raise NotFound(f'no current {collection} record; '
                       f'insert one with: panoptes db insert {collection} --current')
    output.emit_json(record)


@app.command('clear-current')
def clear_current(
    collection: str = COLLECTION,
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
    db_url: str | None = DB_URL,
):
    """Forget the current record of a collection (its stored records stay).

    Examples:

    \b
      panoptes db clear-current weather
    """
    _open(db_type, db_name, db_url, create=False,
          collection=collection).clear_current(collection)


@app.command()
@options.records_output
def prune(
    collections: list[str] | None = typer.Argument(
        None, help='Collections to prune [default: all of them].', show_default=False),
    before: str = typer.Option(
        ..., '--before', help='Delete the records dated before this UTC time: ISO-8601 '
        '(2024-01-01) or a duration before now (30d, 1w).'),
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
    db_url: str | None = DB_URL,
):
    """Delete old records; print {"collection", "deleted"} for each collection.

    Current records stay. A record a sync has not sent yet is deleted all the
    same: sync before pruning.

    Examples:

    \b
      panoptes db prune --before 90d
      panoptes db prune weather power --before 2024-01-01
    """
    from panoptes_cli.database.records import parse_time_bound

    cutoff = _option(parse_time_bound, before, '--before')
    db = _open(db_type, db_name, db_url, create=False)
    for name, deleted in sorted(db.prune(cutoff, collections or None).items()):
        output.emit_record({'collection': name, 'deleted': deleted})


def _unit_id() -> str | None:
    """The unit's pan_id: from the config server, else from $PANOPTES_CONFIG_FILE."""
    import os

    from panoptes_cli.error import PanError

    try:
        from panoptes_cli.config.client import get_config

        unit = get_config('pan_id', verbose=False)
    except PanError:
        unit = None
    config_file = os.environ.get('PANOPTES_CONFIG_FILE')
    if unit is None and config_file and os.path.isfile(config_file):
        from panoptes_cli.config.helpers import load_config

        unit = load_config(config_file).get('pan_id')
    return None if unit is None else str(unit)


@app.command()
@options.records_output
def sync(
    to: str = typer.Option(
        ..., '--to', callback=_postgres_url, show_default=False,
        help='The fleet\'s PostgreSQL server: postgresql://user[:password]@host[:port]/dbname '
        '(a password may also come from ~/.pgpass or PGPASSWORD).'),
    unit: str | None = typer.Option(
        None, '--unit', '-u', show_default=False,
        help='The unit id stored with each record [default: pan_id from the config].'),
    batch_size: int = typer.Option(20_000, '--batch-size', min=1,
                                   help='Records per central transaction.'),
    max_seconds: float | None = typer.Option(
        None, '--max-seconds', min=0, show_default=False,
        help='Start no new batch after this many seconds (for cron); the next run goes on.'),
    to_db_name: str | None = typer.Option(
        None, '--to-db-name', show_default=False,
        help='The database (schema) on the server [default: --db-name].'),
    db_type: DbType = DB_TYPE,
    db_name: str = DB_NAME,
):
    """Send the local records not yet sent to the fleet's PostgreSQL (store and forward).

    Each batch is committed centrally before the local store marks it sent,
    so a sync cut short (network loss, kill -9) and run again sends what is
    missing and stores nothing twice. Each record carries the unit id. Prints
    NDJSON progress after each batch ({"sent", "new", "total", ...}); on a
    terminal, a progress bar and the summary only. An unreachable server is
    an error (status 1) and nothing is marked sent.

    Examples:

    \b
      panoptes db sync --to postgresql://pan@fleet.example.org/panoptes
      panoptes db sync --to "$FLEET_DB" --unit PAN012 --max-seconds 240
    """
    from panoptes_cli.database.postgres import PanPostgresDB
    from panoptes_cli.database.sync import sync as sync_records

    if db_type is DbType.postgres:
        raise typer.BadParameter('sync sends a unit\'s local store: use --db-type sqlite or '
                                 'file', param_hint="'--db-type'")
    unit = unit or _unit_id()
    if not unit:
        raise typer.BadParameter('no unit id: set pan_id in the config '
                                 '(panoptes config set pan_id PAN012) or pass --unit',
                                 param_hint="'--unit'")
    source = _open(db_type, db_name, create=False)
    target = PanPostgresDB(db_name=to_db_name or db_name, url=to)
    reports = sync_records(source, target, unit, batch_size=batch_size, max_seconds=max_seconds)
    start = next(reports)
    # Per-batch lines are for programs reading stdout; a person sees the bar.
    per_batch = not output.environment().stdout_isatty
    summary = start
    with output.progress(start.total, f'Syncing to {start.target}') as advance:
        for report in reports:
            if not report.done:
                advance(report.sent - summary.sent)
                if per_batch:
                    output.emit_record(report.as_record())
            summary = report
    output.emit_record(summary.as_record())
