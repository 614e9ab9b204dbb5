"""What every command shares: writing results, reporting errors, batches, progress.

Data goes to stdout (one JSON document, or NDJSON flushed per record; or CSV,
TSV, a table, raw text when asked); errors, logs and progress go to stderr.
Only light modules are imported here, so that ``panoptes --help`` stays fast.
"""

import contextlib
import dataclasses
import enum
import errno
import json
import math
import os
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator

import typer

# Set by the root --debug option; PANOPTES_DEBUG=1 does the same.
debug_mode = False


class ExitStatus(enum.IntEnum):
    """Every exit status a ``panoptes`` command returns, in one place."""

    SUCCESS = 0
    # A runtime or input error; for a batch, some item failed (the others were done).
    ERROR = 1
    USAGE = 2
    # 128 + the signal's number, as shells report a process a signal ended.
    INTERRUPTED = 130
    TERMINATED = 143


@dataclasses.dataclass(frozen=True)
class Environment:
    """What a command needs to know about the terminal it runs in.

    ``Environment.detect()`` reads the real streams; tests pass their own
    (``with output.use_environment(Environment(stdout_isatty=True, ...))``)
    to pretend a terminal without a pseudo-terminal.
    """

    stdin_isatty: bool = False
    stdout_isatty: bool = False
    stderr_isatty: bool = False
    # Columns of the terminal (or $COLUMNS, else 80).
    width: int = 80
    # Colours on a terminal stream, unless NO_COLOR is set or TERM is dumb.
    colors: bool = False

    @classmethod
    def detect(cls) -> 'Environment':
        """Return the facts about the current sys.stdin, sys.stdout and sys.stderr."""
        stdout_isatty = _isatty(sys.stdout)
        stderr_isatty = _isatty(sys.stderr)
        colors = ((stdout_isatty or stderr_isatty) and 'NO_COLOR' not in os.environ
                  and os.environ.get('TERM', '') != 'dumb')
        return cls(stdin_isatty=_isatty(sys.stdin), stdout_isatty=stdout_isatty,
                   stderr_isatty=stderr_isatty, width=shutil.get_terminal_size().columns,
                   colors=colors)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


_pretended: list[Environment] = []


def environment() -> Environment:
    """Return the terminal facts: the ones a test pretends, else the real ones."""
    return _pretended[-1] if _pretended else Environment.detect()


@contextlib.contextmanager
def use_environment(env: Environment):
    """Make :func:`environment` answer ``env`` inside the ``with`` block."""
    _pretended.append(env)
    try:
        yield env
    finally:
        _pretended.remove(env)


def show_tracebacks() -> bool:
    """Return True when errors should come with a traceback."""
    return debug_mode or os.environ.get('PANOPTES_DEBUG', '').lower() in ('1', 'true', 'yes')


def describe_error(exc: BaseException) -> str:
    """Return ``<what failed>: <why>`` for an exception, without its class name clutter."""
    from panoptes_cli.error import PanError

    if isinstance(exc, PanError):
        return str(exc.msg) if exc.msg else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else type(exc).__name__
        return f'{where}: {exc.strerror}'
    return str(exc) or type(exc).__name__


def is_input_error(exc: BaseException) -> bool:
    """Return True for the errors bad input or a failed operation cause (not bugs)."""
    from panoptes_cli.error import PanError

    return isinstance(exc, (PanError, OSError, ValueError))


def report_error(exc: BaseException, what: str | None = None) -> None:
    """Write one ``Error: ...`` line (and a traceback in debug mode) to stderr."""
    if show_tracebacks():
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = describe_error(exc)
    if not is_input_error(exc):
        message = (f'internal error: {type(exc).__name__}: {message}; '
                   'rerun with --debug for a traceback and please report it')
    if what and not message.startswith(f'{what}:'):
        message = f'{what}: {message}'
    sys.stderr.write(f'Error: {message}\n')
    sys.stderr.flush()


class StdoutClosed(Exception):
    """The reader of stdout went away (``panoptes ... | head -1``)."""


def _write_stdout(text: str) -> None:
    bar = _active_progress[-1] if _active_progress else None
    if bar is not None and environment().stdout_isatty:
        bar.write_data(lambda: _write_and_flush(text))
    else:
        _write_and_flush(text)


def _write_and_flush(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise StdoutClosed() from None


class Format(str, enum.Enum):
    """How records are written to stdout."""

    json = 'json'
    csv = 'csv'
    tsv = 'tsv'
    table = 'table'


@dataclasses.dataclass
class _OutputMode:
    format: Format = Format.json
    raw: bool = False
    # Records waiting for the CSV/TSV/table writer (it needs every column first).
    rows: list = dataclasses.field(default_factory=list)


_modes: list[_OutputMode] = []


def _mode() -> _OutputMode:
    return _modes[-1] if _modes else _OutputMode()


@contextlib.contextmanager
def output_mode(format: Format | None = None, raw: bool | None = None):
    """Write records as ``format`` (and strings raw) inside the ``with`` block.

    What is not given is kept from the enclosing block. CSV, TSV and tables
    are written when the block ends (also on Ctrl-C or an error), since their
    columns are those of every record.
    """
    outer = _mode()
    mode = _OutputMode(format=outer.format if format is None else format,
                       raw=outer.raw if raw is None else raw)
    _modes.append(mode)
    try:
        yield mode
    finally:
        _modes.remove(mode)
        if mode.rows:
            _write_rows(mode.format, mode.rows)


def current_format() -> Format:
    """Return how records are being written (--csv, --tsv, --table, else JSON)."""
    return _mode().format


def raw_requested() -> bool:
    """Return True when the command was asked for raw strings (-r/--raw)."""
    return _mode().raw


def json_text(obj, indent: int | None = None) -> str:
    """Return ``obj`` as valid JSON: NaN and infinities (which JSON has no words for) as null.

    Python's json module writes them as ``NaN``/``Infinity``, which ``jq`` and
    strict parsers refuse; a record holding one (a sensor's reading, say) is
    written with null in its place.

    >>> json_text({'temp': float('nan'), 'wind': [1.5, float('inf')]})
    '{"temp": null, "wind": [1.5, null]}'
    """
    from panoptes_cli.error import InvalidSerialization
    from panoptes_cli.serializers import to_json

    try:
        return to_json(obj, indent=indent, allow_nan=False)
    except InvalidSerialization as err:
        if not isinstance(err.__cause__, ValueError):
            raise
    return to_json(_finite(obj), indent=indent, allow_nan=False)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def emit_json(obj) -> None:
    """Write one JSON document to stdout: indented on a terminal, compact in a pipe.

    As CSV/TSV/a table, a list is one row per item and anything else one row;
    in raw mode a string is written without quotes (as ``jq -r`` does).
    """
    mode = _mode()
    if mode.format is not Format.json:
        mode.rows.extend(obj if isinstance(obj, list) else [obj])
    elif mode.raw and isinstance(obj, str):
        _write_stdout(f'{obj}\n')
    else:
        indent = 2 if environment().stdout_isatty else None
        _write_stdout(json_text(obj, indent=indent) + '\n')


def emit_record(obj) -> None:
    """Write one NDJSON record to stdout and flush it, so pipes see it at once."""
    mode = _mode()
    if mode.format is not Format.json:
        mode.rows.append(obj)
    else:
        _write_stdout(json_text(obj) + '\n')


def emit_text(text: str) -> None:
    """Write one bare line of text to stdout (for values shell scripts capture)."""
    _write_stdout(f'{text}\n')


def flatten(record, prefix: str = '') -> dict:
    """Return a record's nested mappings as dotted keys: {'a': {'b': 1}} -> {'a.b': 1}."""
    if not isinstance(record, dict):
        return {prefix or 'value': record}
    flat = {}
    for key, value in record.items():
        name = f'{prefix}.{key}' if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def _cell(value) -> str:
    """A value as spreadsheet text: strings as they are, null empty, the rest as JSON."""
    from panoptes_cli.serializers import to_json

    if value is None:
        return ''
    if isinstance(value, str):
        return value
    return to_json(value)


def _write_rows(format: Format, records: list) -> None:
    rows = [flatten(record) for record in records]
    # Columns in the order they first appear, so the usual keys come first.
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if format is Format.table:
        _write_table(columns, rows)
        return
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, dialect='excel-tab' if format is Format.tsv else 'excel',
                        lineterminator='\n')
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    _write_stdout(text.getvalue())


def _write_table(columns: list[str], rows: list[dict]) -> None:
    import io

    from rich.console import Console
    from rich.table import Table

    env = environment()
    if len(columns) * 12 <= env.width:
        tables = [Table(*columns)]
        for row in rows:
            tables[0].add_row(*(_cell(row.get(column)) for column in columns))
    else:
        # Too many columns to read across: one two-column table a record instead.
        tables = []
        for row in rows:
            tables.append(Table('key', 'value'))
            for column in columns:
                if column in row:
                    tables[-1].add_row(column, _cell(row[column]))
    text = io.StringIO()
    console = Console(file=text, width=env.width, force_terminal=env.stdout_isatty and env.colors,
                      no_color=not env.colors, highlight=False)
    for table in tables:
        console.print(table)
    _write_stdout(text.getvalue())


class Batch:
    """Run one operation per item, report failures as they happen, fail at the end.

    A batch does every item even when some fail; leaving the ``with`` block
    exits with status 1 if any item failed.

    >>> with Batch() as batch:                     # doctest: +SKIP
    ...     for path in batch.inputs(files):
    ...         with batch.item(path):
    ...             emit_record(process(path))
    """

    def __init__(self):
        self.failures = 0

    def item(self, what: str):
        return _BatchItem(self, what)

    def inputs(self, paths: Iterable[str]) -> Iterator[str]:
        """Yield the file names to work on, reading stdin as it arrives for each ``-``.

        A stdin line that names no file is reported as a failed item.
        """
        for path in paths:
            if path != '-':
                yield path
                continue
            for name in stdin_names():
                if isinstance(name, InputError):
                    self.fail(name, 'stdin')
                else:
                    yield name

    def fail(self, exc: BaseException, what: str | None = None) -> None:
        """Count one failed item and report it."""
        self.failures += 1
        report_error(exc, what)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.failures:
            raise typer.Exit(ExitStatus.ERROR)
        return False


class _BatchItem:
    def __init__(self, batch: Batch, what: str):
        self.batch = batch
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not is_input_error(exc):
            return False
        self.batch.fail(exc, self.what)
        return True


def run_batch(files: list[str], function, *, jobs: int | None, description: str,
              record, scheduler: str | None = None, programs: Iterable[str] = ()) -> None:
    """Run ``function`` on every input file through the runner; print a record for each.

    ``function(path)`` runs ``jobs`` at a time (default: one per core), in
    worker processes when more than one, and must be picklable (a core
    function, or a functools.partial of one). With ``scheduler`` (a Dask
    scheduler address) each file is a task on that cluster instead, on the
    workers that have the external ``programs`` the function runs. Each
    success prints ``record(path, value)`` as it finishes; each failure is
    reported and the rest go on (exit status 1 at the end). Names on stdin
    start as they arrive.
    """
    total = None if '-' in files else len(files)
    with Batch() as batch, progress(total, description) as advance:
        runner = runner_for(jobs, total, scheduler, programs)
        with contextlib.closing(runner.map_unordered(function, batch.inputs(files))) as outcomes:
            for outcome in outcomes:
                advance()
                with batch.item(outcome.item):
                    if outcome.error is not None:
                        raise with_overwrite_hint(outcome.error)
                    emit_record(record(outcome.item, outcome.value))


def runner_for(jobs: int | None, total: int | None, scheduler: str | None = None,
               programs: Iterable[str] = ()):
    """The runner for a batch: a Dask cluster's with ``scheduler``, else a local pool.

    The local pool has ``jobs`` workers (default: one per core), never more
    than ``total`` items need.
    """
    if scheduler:
        from panoptes_cli.cluster import DaskRunner

        return DaskRunner(scheduler, programs)
    from panoptes_cli.runner import make_runner

    jobs = jobs or os.cpu_count() or 1
    return make_runner(min(jobs, total) if total else jobs)


def with_overwrite_hint(exc: BaseException) -> BaseException:
    """Add "; pass --overwrite to replace it" to an output-exists error."""
    if isinstance(exc, FileExistsError) and 'overwrite' not in str(exc.strerror):
        return FileExistsError(exc.errno, f'{exc.strerror}; pass --overwrite to replace it',
                               exc.filename)
    return exc


class InputError(ValueError):
    """A line on stdin that names no file."""


# A stdin line longer than this is not a file name nor a panoptes record.
MAX_INPUT_LINE = 1 << 20
# What a FITS file starts with: its bytes piped in by mistake (`cat x.fits | ...`).
_FITS_START = b'SIMPLE  ='


def stdin_names(stream=None) -> Iterator:
    """Yield the file names on stdin as they arrive; an :class:`InputError` for a bad line.

    A line is a path, or an NDJSON record from another ``panoptes`` command:
    its ``output`` when present, else its ``filename``.
    """
    stream = stream if stream is not None else getattr(sys.stdin, 'buffer', sys.stdin)
    number = 0
    while line := stream.readline(MAX_INPUT_LINE):
        number += 1
        if isinstance(line, str):
            line = line.encode()
        if number == 1 and (line.startswith(_FITS_START) or b'\0' in line):
            raise typer.BadParameter(
                'stdin holds FITS (or other binary) data, not file names; give the file '
                'as an argument, or pipe its name: ls *.fits | panoptes ...',
                param_hint="'-'")
        if len(line) >= MAX_INPUT_LINE and not line.endswith(b'\n'):
            while (rest := stream.readline(MAX_INPUT_LINE)) and not rest.endswith(b'\n'):
                pass
            yield InputError(f'line {number}: longer than {MAX_INPUT_LINE} bytes')
            continue
        name = _name_on_line(line, number)
        if name is not None:
            yield name


def _name_on_line(line: bytes, number: int):
    try:
        text = line.decode().strip()
    except UnicodeDecodeError:
        return InputError(f'line {number}: not UTF-8 text')
    if not text.startswith(('{', '"', '[')):
        return text or None
    try:
        value = json.loads(text)
    except ValueError:
        # A name that only looks like JSON ("[draft] m42.fits") is still a name.
        value = None if text.startswith('{') else text
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return InputError(f'line {number}: not a file name nor a JSON record')
    for key in ('output', 'filename'):
        if isinstance(value.get(key), str):
            return value[key]
    return InputError(f'line {number}: a record with no "output" or "filename" '
                      f'(keys: {", ".join(value) or "none"})')


def read_paths(paths: list[str]) -> list[str]:
    """Return the file names, those read from stdin in place of each ``-`` (all of them).

    For streaming, iterate :meth:`Batch.inputs` instead.
    """
    names = list(Batch().inputs(paths))
    return names


_active_progress: list = []


def progress(total: int | None, description: str):
    """Return a progress bar on stderr when it is a terminal, else a silent stand-in.

    Use as ``with progress(n, 'Solving') as advance: ... advance()``; ``total``
    None (names still arriving on stdin) shows a bar without an end. While it
    shows, data written to a terminal stdout goes on its own line above it.
    """
    if not environment().stderr_isatty or (total is not None and total <= 1):
        return _NoProgress()
    return _RichProgress(total, description)


class _NoProgress:
    def __enter__(self):
        return lambda steps=1: None

    def __exit__(self, *exc_info):
        return False


class _RichProgress:
    def __init__(self, total, description):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        env = environment()
        self.console = Console(stderr=True, width=env.width, no_color=not env.colors,
                               force_terminal=True)
        self.progress = Progress(
            '[progress.description]{task.description}', BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=self.console, transient=True,
            # Rich would otherwise send the command's stdout (the data) to the terminal.
            redirect_stdout=False, redirect_stderr=False)
        self.task = self.progress.add_task(description, total=total)

    def write_data(self, write) -> None:
        """Run ``write`` (of data to stdout) with the bar wiped first and redrawn after it."""
        live = self.progress.live
        # Rich's own lock and cursor codes, as it uses them to print above a live display.
        with live._lock:
            self.console.control(live._live_render.position_cursor())
            self.console.file.flush()
            try:
                write()
            finally:
                live.refresh()

    def __enter__(self):
        self.progress.start()
        _active_progress.append(self)
        return lambda steps=1: self.progress.advance(self.task, steps)

    def __exit__(self, *exc_info):
        _active_progress.remove(self)
        self.progress.stop()
        return False


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwound like Ctrl-C, so every cleanup path runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# What the user is told for each signal, as shells word them.
_SIGNAL_WORDS = {'SIGTERM': 'Terminated', 'SIGHUP': 'Hangup'}


def _child_pids() -> list[int]:
    """The processes this one started (Linux /proc), so a signal can reach them as Ctrl-C would."""
    me = os.getpid()
    children = []
    with contextlib.suppress(OSError):
        for entry in os.scandir('/proc'):
            if not entry.name.isdigit():
                continue
            try:
                with open(f'/proc/{entry.name}/stat', 'rb') as handle:
                    stat = handle.read()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            fields = stat[stat.rfind(b')') + 2:].split()
            if len(fields) > 1 and int(fields[1]) == me:
                children.append(int(entry.name))
    return children


@contextlib.contextmanager
def termination_as_interrupt(received: list):
    """Inside the block, SIGTERM and SIGHUP act as Ctrl-C does, then exit 128 + the signal.

    Ctrl-C reaches every process in the terminal's foreground group; a SIGTERM
    from ``kill``, a service manager or a closed terminal (SIGHUP) often reaches
    only this one. So the first of them is passed on to this process's children
    as SIGINT (pool workers and external programs end as on Ctrl-C, removing
    their temporary files) and raised here as :class:`Terminated`, a
    KeyboardInterrupt: the same ``finally`` blocks remove temporary directories
    and ``.part`` files. Later ones are ignored while that cleanup runs. The
    signal's number is appended to ``received``.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        if received:
            return
        received.append(signum)
        for pid in _child_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, terminate) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _report_termination(signum: int) -> int:
    """Say which signal ended the command (as shells do); return 128 + its number."""
    import signal

    # After SIGHUP the terminal may be gone: nobody to tell.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f'{_SIGNAL_WORDS.get(signal.Signals(signum).name, "Terminated")}\n')
        sys.stderr.flush()
    return 128 + signum


def run_main(invoke) -> int:
    """Call ``invoke()`` (a Click ``main`` in non-standalone mode) under the error contract.

    Returns the exit status.

    PanError, OSError and ValueError: one ``Error:`` line, status 1. Usage
    errors: status 2. Ctrl-C: status 130; SIGTERM and SIGHUP act as Ctrl-C
    (see :func:`termination_as_interrupt`) with status 143 and 129. A closed
    stdout: quiet, status 0.
    """
    received = []
    status = _run_reporting_errors(invoke, received)
    # Typer turns a KeyboardInterrupt, so also a Terminated, into a status of 130.
    return _report_termination(received[0]) if received else status


def _run_reporting_errors(invoke, received: list) -> int:
    try:
        with termination_as_interrupt(received):
            result = invoke()
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:
        # Typer's (vendored Click's) usage errors: status 2, with the usage line.
        if hasattr(exc, 'show'):
            exc.show()
        else:
            sys.stderr.write(f'Error: {exc.format_message()}\n')
        return exc.exit_code
    except Terminated:
        return ExitStatus.TERMINATED  # reported by run_main
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write('Interrupted\n')
        return ExitStatus.INTERRUPTED
    except StdoutClosed:
        return ExitStatus.SUCCESS
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into a status
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            return ExitStatus.SUCCESS
        report_error(exc)
        return ExitStatus.ERROR
    return result if isinstance(result, int) else ExitStatus.SUCCESS


def note(text: str) -> None:
    """Write one line of information for a person to stderr (never mixed with the data)."""
    sys.stderr.write(f'{text}\n')
    sys.stderr.flush()
