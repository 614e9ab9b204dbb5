"""A store in PostgreSQL, for a fleet's records in one place (psycopg 3 and its pool).

The server is named by a URL, ``postgresql://user[:password]@host[:port]/dbname``
(``url=`` or ``$PANOPTES_DB_URL``). Each panoptes database (``db_name``) is a
PostgreSQL schema of that name in it, created on first use with its tables:

- ``records``: one row per record, ``data`` as JSONB, indexed by collection
  and id and by collection and date; ``unit`` names the unit a record came
  from (``panoptes db sync``), NULL for records inserted directly. A unit's
  record ids are unique, so syncing twice stores nothing twice.
- ``current``: the current record of each collection.
- ``schema_version``: the version of this layout. A newer panoptes-cli
  migrates an older schema in place, in one transaction.

``--where``, ``--since``, ``--until`` and ``--limit`` run as SQL. Inserting
into ``records`` notifies the channel ``panoptes_records`` (payload: schema
and the range of new ``seq``), which ``find --follow`` listens to.

A URL's password never appears in messages: see :func:`redact_url`.
"""

import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.database.query import limited, postgres_condition, sql_filters
from panoptes_cli.database.records import data_text, validate_name
from panoptes_cli.error import DatabaseError, IllegalValue, NotFound

NOTIFY_CHANNEL = 'panoptes_records'
_CONNECT_SECONDS = 10.0
# Rows fetched at a time while streaming a query's result.
_FETCH_ROWS = 2000
_SEEN_LIMIT = 100_000
# A number with an exponent (or text that looks like one: keeping the text costs only space).
_EXPONENT = re.compile(r'\d[eE]')

# Each step brings a schema from the version before it to its own (index + 1).
_MIGRATIONS = [
    # 1: records and current records.
    """
    CREATE TABLE {schema}.records (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        collection text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        date timestamp(3) NOT NULL,
        data jsonb NOT NULL
    );
    CREATE INDEX records_by_id ON {schema}.records (collection, id);
    CREATE INDEX records_by_date ON {schema}.records (collection, date);
    CREATE TABLE {schema}.current (
        collection text COLLATE "C" PRIMARY KEY,
        id text COLLATE "C" NOT NULL,
        date timestamp(3) NOT NULL,
        data jsonb NOT NULL
    )
    """,
    # 2: the unit a record came from (sync; NULL for records inserted directly),
    # unique per unit (the id index, with the unit last, still finds by id),
    # data as JSON text where JSONB would change it (see _columns), notifications.
    """
    ALTER TABLE {schema}.records ADD COLUMN unit text COLLATE "C";
    ALTER TABLE {schema}.records ADD COLUMN data_text text;
    ALTER TABLE {schema}.current ADD COLUMN data_text text;
    DROP INDEX {schema}.records_by_id;
    CREATE UNIQUE INDEX records_by_id ON {schema}.records (collection, id, unit);
    CREATE FUNCTION {schema}.notify_records() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('panoptes_records', TG_TABLE_SCHEMA || ' ' || min(seq) || ' ' || max(seq))
        FROM new_rows HAVING count(*) > 0;
        RETURN NULL;
    END $$;
    CREATE TRIGGER records_notify AFTER INSERT ON {schema}.records
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION {schema}.notify_records()
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

# The pool logs each failed connection attempt (Python's last-resort handler would print
# them); the cause is reported once, in the error raised.
logging.getLogger('psycopg.pool').addHandler(logging.NullHandler())


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, for messages and logs.

    >>> redact_url('postgresql://pan:s3cret@db.example.org:5433/fleet')
    'postgresql://pan:***@db.example.org:5433/fleet'
    >>> redact_url('postgresql://db.example.org/fleet?password=s3cret&sslmode=require')
    'postgresql://db.example.org/fleet?password=***&sslmode=require'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return '<unreadable URL>'
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition('@')
        netloc = f'{userinfo.partition(":")[0]}:***@{hostinfo}'
    query = '&'.join(f'{key}=***' if key.lower() == 'password' else f'{key}{sep}{value}'
                     for key, sep, value in (item.partition('=')
                                             for item in parts.query.split('&') if item))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_url(url: str) -> str:
    """Return ``url`` if it is a usable PostgreSQL URL, else raise IllegalValue.

    >>> check_url('postgresql://pan@localhost/fleet')
    'postgresql://pan@localhost/fleet'
    >>> check_url('mysql://pan@localhost/fleet')
    Traceback (most recent call last):
      ...
    panoptes_cli.error.IllegalValue: IllegalValue: invalid PostgreSQL URL 'mysql://pan@localhost/fleet': use postgresql://user[:password]@host[:port]/dbname
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        good = (parts.scheme in ('postgresql', 'postgres') and parts.path.strip('/')
                and (parts.hostname or 'host=' in parts.query))
    except ValueError:
        good = False
    if not good:
        raise IllegalValue(f'invalid PostgreSQL URL {redact_url(url)!r}: '
                           'use postgresql://user[:password]@host[:port]/dbname')
    return url


def server_of(url: str) -> str:
    """Return ``host:port`` of a URL (what an error message names).

    >>> server_of('postgresql://pan:pw@db.example.org/fleet')
    'db.example.org:5432'
    """
    parts = urlsplit(url)
    return f'{parts.hostname or "localhost"}:{parts.port or 5432}'


def _cause(err: Exception) -> str:
    """The useful line of a psycopg error (its messages run over several lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[0]
    # "connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused"
    return text.rsplit(' failed: ', 1)[-1] if ' failed: ' in text else text


def _data_text(record, collection: str) -> str:
    """The JSON text of a prepared record's data."""
    return data_text(record.id, collection, record.date, record.text)


def _columns(data_text: str) -> tuple[str, str | None]:
    """Return the (data, data_text) columns for a record's data JSON.

    JSONB keeps numbers as decimals, so a float written with an exponent
    (``5.2e+16``) would come back an integer: such data keeps its text too,
    which is what reads return. JSONB refuses NUL (``\\u0000``): such data
    is kept as text only (``data`` is JSON null, so ``--where`` cannot see it).
    """
    if '\\u0000' in data_text:
        return 'null', data_text
    if _EXPONENT.search(data_text):
        return data_text, data_text
    return data_text, None


def _record(collection, obj_id, date, unit, data, data_text=None) -> dict:
    if data_text is not None:
        data = json.loads(data_text)
    record = {'_id': obj_id, 'type': collection, 'date': date.isoformat(timespec='milliseconds'),
              'data': data}
    if unit:
        record['unit'] = unit
    return record


class PanPostgresDB(AbstractPanDB):
    """Stores collections in a PostgreSQL schema (one per database name)."""

    def __init__(self, db_name='panoptes', url=None, pool_size=4, create=True, **kwargs):
        """Open the named database (a schema) on the PostgreSQL server at ``url``.

        Args:
            db_name (str, optional): Name of the database: the schema's name.
            url (str, optional): ``postgresql://user[:password]@host[:port]/dbname``;
                default ``$PANOPTES_DB_URL``.
            pool_size (int, optional): At most this many connections at once.
            create (bool, optional): Create the schema if it does not exist
                (default); with False, raise NotFound instead.

        Raises:
            panoptes_cli.error.IllegalValue: No URL, or a malformed one.
            panoptes_cli.error.DatabaseError: The server cannot be reached,
                refuses the connection, or holds a newer schema.
        """
        super().__init__(db_name='panoptes' if db_name is None else db_name, **kwargs)
        if len(self.db_name.encode()) > 63:
            raise IllegalValue(f'invalid database name {self.db_name!r}: PostgreSQL schema names '
                               'have at most 63 bytes')
        url = url or os.environ.get('PANOPTES_DB_URL')
        if not url:
            raise IllegalValue('no PostgreSQL server given: set PANOPTES_DB_URL or pass '
                               '--db-url postgresql://user@host/dbname')
        self.url = check_url(url)
        self.pool_size = pool_size
        self._pool = None
        self._pool_pid = None
        self._pool_lock = threading.Lock()
        self.schema = _identifier(self.db_name)
        self._set_up(create)

    def __repr__(self):
        return f'PanPostgresDB({self.db_name!r}, url={redact_url(self.url)!r})'

    # Connections.

    @contextmanager
    def _errors(self):
        import psycopg

        try:
            yield
        except psycopg.OperationalError as err:
            raise DatabaseError(f'PostgreSQL at {server_of(self.url)}: {_cause(err)}') from err
        except psycopg.Error as err:
            raise DatabaseError(f'PostgreSQL at {server_of(self.url)} ({self.db_name}): '
                                f'{_cause(err)}') from err

    def _pool_now(self):
        """Return this process's pool, opening it (and failing fast if the server cannot be reached)."""
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                return self._pool
            from psycopg_pool import ConnectionPool, PoolTimeout

            failures = []
            pool = ConnectionPool(
                self.url, min_size=1, max_size=self.pool_size, open=False, num_workers=1,
                connection_class=_connection_class(failures), name=f'panoptes-{self.db_name}',
                kwargs={'connect_timeout': int(_CONNECT_SECONDS), 'autocommit': True,
                        'application_name': 'panoptes'})
            pool.open(wait=False)
            waited = 0.0
            while True:
                # Not pool.wait(): it closes the pool when it times out.
                try:
                    pool.putconn(pool.getconn(timeout=0.02))
                    break
                except PoolTimeout:
                    waited += 0.02
                    if failures or waited >= _CONNECT_SECONDS:
                        pool.close(timeout=0)
                        cause = _cause(failures[0]) if failures else 'no answer in time'
                        raise DatabaseError(f'cannot connect to PostgreSQL at '
                                            f'{server_of(self.url)}: {cause}') from None
            self._pool, self._pool_pid = pool, os.getpid()
            # Closed from the thread that lets the store go (or at exit): left to
            # itself, a pool may be collected in its own worker thread, which
            # cannot join itself.
            weakref.finalize(self, pool.close)
            return pool

    @contextmanager
    def _connection(self):
        with self._pool_now().connection() as connection:
            yield connection

    def close(self) -> None:
        """Close the connections (they reopen when the store is used again)."""
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None

    def _set_up(self, create: bool = True) -> None:
        """Create or migrate the schema, under a lock so that many units may start at once."""
        from psycopg import sql

        with self._errors(), self._connection() as connection:
            version = self._version(connection)
            if version == SCHEMA_VERSION:
                return
            if version == 0 and not create:
                raise NotFound(f'no database {self.db_name!r} on PostgreSQL at '
                               f'{server_of(self.url)}; insert or sync records first, '
                               'or check --db-name')
            with connection.transaction():
                connection.execute('SELECT pg_advisory_xact_lock(hashtext(%s))',
                                   (f'panoptes schema {self.db_name}',))
                connection.execute(sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(self.schema))
                connection.execute(sql.SQL(
                    'CREATE TABLE IF NOT EXISTS {}.schema_version (version integer NOT NULL)'
                ).format(self.schema))
                version = self._version(connection)
                if version > SCHEMA_VERSION:
                    raise DatabaseError(
                        f'PostgreSQL at {server_of(self.url)}: schema {self.db_name} was written '
                        f'by a newer panoptes-cli (version {version}); upgrade panoptes-cli')
                for step in _MIGRATIONS[version:]:
                    connection.execute(step.replace('{schema}', self.schema.as_string(connection)))
                connection.execute(sql.SQL('DELETE FROM {}.schema_version').format(self.schema))
                connection.execute(sql.SQL('INSERT INTO {}.schema_version VALUES (%s)').format(
                    self.schema), (SCHEMA_VERSION,))

    def _version(self, connection) -> int:
        from psycopg import sql

        exists = connection.execute('SELECT to_regclass(%s)', (
            f'{self.schema.as_string(connection)}.schema_version',)).fetchone()[0]
        if exists is None:
            return 0
        row = connection.execute(sql.SQL('SELECT max(version) FROM {}.schema_version').format(
            self.schema)).fetchone()
        return row[0] or 0

    def _sql(self, text: str):
        """Return ``text`` with ``{s}`` standing for this store's schema, as composed SQL."""
        from psycopg import sql

        return sql.SQL(text).format(s=self.schema)

    # The backend interface.

    def _store(self, collection, records, current=None):
        with self._errors(), self._connection() as connection, connection.transaction():
            if records:
                with connection.cursor() as cursor, cursor.copy(self._sql(
                        'COPY {s}.records (collection, id, date, data, data_text) FROM STDIN')
                ) as copy:
                    for record in records:
                        copy.write_row((collection, record.id, record.date,
                                        *_columns(_data_text(record, collection))))
            if current is not None:
                connection.execute(self._sql(
                    'INSERT INTO {s}.current (collection, id, date, data, data_text) '
                    'VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection) DO UPDATE SET '
                    'id = excluded.id, date = excluded.date, data = excluded.data, '
                    'data_text = excluded.data_text'),
                    (collection, current.id, current.date, *_columns(_data_text(current, collection))))

    def _find_record(self, collection, obj_id):
        with self._errors(), self._connection() as connection:
            row = connection.execute(self._sql(
                'SELECT collection, id, date, unit, data, data_text FROM {s}.records '
                'WHERE collection = %s AND id = %s ORDER BY seq LIMIT 1'),
                (collection, obj_id)).fetchone()
        return None if row is None else _record(*row)

    def _scan(self, collection, since, until, conditions, limit) -> Iterator[dict]:
        filters, params, in_python = sql_filters(since, until, conditions, postgres_condition,
                                                 '%s')
        query = ('SELECT collection, id, date, unit, data, data_text FROM {s}.records '
                 f'WHERE collection = %s{filters} ORDER BY date DESC, seq DESC')
        if limit is not None and not in_python:
            query += f' LIMIT {int(limit)}'
        with self._errors(), self._connection() as connection, connection.transaction():
            # A named (server-side) cursor: a million rows arrive a few thousand at a time.
            with connection.cursor(name='panoptes_scan') as cursor:
                cursor.itersize = _FETCH_ROWS
                cursor.execute(self._sql(query), [collection, *params])
                yield from limited((_record(*row) for row in cursor), in_python, limit)

    def _current_record(self, collection):
        with self._errors(), self._connection() as connection:
            row = connection.execute(self._sql(
                'SELECT collection, id, date, %s, data, data_text FROM {s}.current '
                'WHERE collection = %s'),
                ('', collection)).fetchone()
        return None if row is None else _record(*row)

    def _clear(self, collection):
        with self._errors(), self._connection() as connection:
            connection.execute(self._sql('DELETE FROM {s}.current WHERE collection = %s'),
                               (collection,))

    def _watch(self, collection) -> Iterator[list[dict]]:
        import psycopg

        # A connection of its own: it waits on LISTEN for as long as the caller follows.
        with self._errors():
            connection = psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=int(_CONNECT_SECONDS))
        seen = set()
        try:
            with self._errors():
                connection.execute(f'LISTEN {NOTIFY_CHANNEL}')
            yield []
            schema = self.db_name
            while True:
                ranges = []
                with self._errors():
                    for notice in connection.notifies(timeout=0.5, stop_after=1):
                        name, _, bounds = notice.payload.rpartition(' ')
                        name, _, low = name.rpartition(' ')
                        if name == schema:
                            ranges.append((int(low), int(bounds)))
                    records = []
                    for low, high in ranges:
                        # The rows of one committed statement (others in the range may
                        # commit later, with a notification of their own).
                        for seq, *row in connection.execute(self._sql(
                                'SELECT seq, collection, id, date, unit, data, data_text FROM {s}.records '
                                'WHERE seq BETWEEN %s AND %s AND collection = %s ORDER BY seq'),
                                (low, high, collection)):
                            if seq not in seen:
                                seen.add(seq)
                                records.append(_record(*row))
                if len(seen) > _SEEN_LIMIT:
                    seen = set(sorted(seen)[_SEEN_LIMIT // 2:])
                yield records
        finally:
            connection.close()

    def _prune(self, collection, before) -> int:
        with self._errors(), self._connection() as connection:
            return connection.execute(self._sql(
                'DELETE FROM {s}.records WHERE collection = %s AND date < %s'),
                (collection, before)).rowcount

    def _collections(self):
        with self._errors(), self._connection() as connection:
            return [name for (name,) in connection.execute(self._sql(
                'SELECT DISTINCT collection FROM {s}.records'))]

    # Receiving a unit's records (panoptes db sync).

    def receive(self, unit: str, rows) -> int:
        """Store a unit's records in one transaction; return how many were new.

        Records this unit sent before (same collection and id) are skipped,
        so sending a batch again after a failure stores nothing twice.

        Args:
            unit (str): The unit's id (``pan_id``), not empty.
            rows: ``(collection, id, date, data JSON text)`` tuples.
        """
        if not unit:
            raise IllegalValue('a unit id is needed to sync: set pan_id in the config or '
                               'pass --unit')
        import psycopg

        rows = list(rows)
        with self._errors(), self._connection() as connection:
            try:
                # Usually none of them is there yet: copy them all, and let the
                # unique index say if one was (a batch sent again after a crash).
                return self._receive(connection, unit, rows, check=False)
            except psycopg.errors.UniqueViolation:
                return self._receive(connection, unit, rows, check=True)

    def _receive(self, connection, unit, rows, check: bool) -> int:
        with connection.transaction():
            # One sync of a unit at a time, so checking then copying is safe.
            connection.execute('SELECT pg_advisory_xact_lock(hashtext(%s))',
                               (f'panoptes sync {self.db_name} {unit}',))
            sent = set()
            if check:
                ids = {}
                for collection, obj_id, _date, _data in rows:
                    ids.setdefault(collection, []).append(obj_id)
                for collection, wanted in ids.items():
                    sent.update((collection, obj_id) for (obj_id,) in connection.execute(
                        self._sql('SELECT id FROM {s}.records WHERE collection = %s '
                                  'AND id = ANY(%s) AND unit = %s'), (collection, wanted, unit)))
            new = 0
            with connection.cursor() as cursor, cursor.copy(self._sql(
                    'COPY {s}.records (collection, id, date, unit, data, data_text) FROM STDIN')
            ) as copy:
                for collection, obj_id, date, text in rows:
                    if (collection, obj_id) not in sent:
                        # The same record twice in one batch is stored once.
                        sent.add((collection, obj_id))
                        copy.write_row((collection, obj_id, date, unit, *_columns(text)))
                        new += 1
            return new

    @classmethod
    def permanently_erase_database(cls, db_name, url=None, **kwargs):
        """Drop the named database's schema and everything in it.

        Args:
            db_name (str): The database (schema) name.
            url (str, optional): The server, default ``$PANOPTES_DB_URL``.
        """
        import psycopg
        from psycopg import sql

        url = check_url(url or os.environ.get('PANOPTES_DB_URL') or '')
        try:
            with psycopg.connect(url, autocommit=True,
                                 connect_timeout=int(_CONNECT_SECONDS)) as connection:
                connection.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(
                    _identifier(validate_name(db_name, 'database'))))
        except psycopg.Error as err:
            raise DatabaseError(f'PostgreSQL at {server_of(url)}: {_cause(err)}') from err


def _identifier(name: str):
    from psycopg import sql

    return sql.Identifier(name)


def _connection_class(failures: list):
    """A psycopg Connection class that notes why connecting failed (the pool only retries)."""
    import psycopg

    class _NotingConnection(psycopg.Connection):
        @classmethod
        def connect(cls, *args, **kwargs):
            try:
                return super().connect(*args, **kwargs)
            except Exception as err:
                failures.append(err)
                raise

    return _NotingConnection

