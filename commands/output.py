"""What every command shares: writing results, reporting errors, batches, progress.

Data goes to stdout (one JSON document, or NDJSON flushed per record); errors,
logs and progress go to stderr. Only light modules are imported here, so that
``panoptes --help`` stays fast.
"""

import contextlib
import errno
import os
import sys

import typer

# Set by the root --debug option; PANOPTES_DEBUG=1 does the same.
debug_mode = False


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


def emit_json(obj) -> None:
    """Write one JSON document to stdout: indented on a terminal, compact in a pipe."""
    from panoptes_cli.serializers import to_json

    indent = 2 if sys.stdout.isatty() else None
    _write_stdout(to_json(obj, indent=indent) + '\n')


def emit_record(obj) -> None:
    """Write one NDJSON record to stdout and flush it, so pipes see it at once."""
    from panoptes_cli.serializers import to_json

    _write_stdout(to_json(obj) + '\n')


def emit_text(text: str) -> None:
    """Write one bare line of text to stdout (for values shell scripts capture)."""
    _write_stdout(f'{text}\n')


class Batch:
    """Run one operation per item, report failures as they happen, fail at the end.

    A batch does every item even when some fail; leaving the ``with`` block
    exits with status 1 if any item failed.

    >>> with Batch() as batch:                     # doctest: +SKIP
    ...     for path in paths:
    ...         with batch.item(path):
    ...             emit_record(process(path))
    """

    def __init__(self):
        self.failures = 0

    def item(self, what: str):
        return _BatchItem(self, what)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.failures:
            raise typer.Exit(1)
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
        self.batch.failures += 1
        report_error(exc, self.what)
        return True


def progress(total: int, description: str):
    """Return a progress bar on stderr when it is a terminal, else a silent stand-in.

    Use as ``with progress(n, 'Solving') as advance: ... advance()``.
    """
    if not sys.stderr.isatty() or total <= 1:
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

        self.progress = Progress(
            '[progress.description]{task.description}', BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            # Rich would otherwise send the command's stdout (the data) to the terminal.
            redirect_stdout=False, redirect_stderr=False)
        self.task = self.progress.add_task(description, total=total)

    def __enter__(self):
        self.progress.start()
        return lambda steps=1: self.progress.advance(self.task, steps)

    def __exit__(self, *exc_info):
        self.progress.stop()
        return False


def read_paths(paths: list[str]) -> list[str]:
    """Expand a lone ``-`` into the file names read from stdin, one per line."""
    if paths == ['-']:
        return [line.strip() for line in sys.stdin if line.strip()]
    return paths


def run_main(invoke) -> int:
    """Call ``invoke()`` (a Click ``main`` in non-standalone mode) under the error contract.

    Returns the exit status.

    PanError, OSError and ValueError: one ``Error:`` line, status 1. Usage
    errors: status 2. Ctrl-C: status 130. A closed stdout: quiet, status 0.
    """
    try:
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
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write('Interrupted\n')
        return 130
    except StdoutClosed:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into a status
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            return 0
        report_error(exc)
        return 1
    return result if isinstance(result, int) else 0


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C inside the block: KeyboardInterrupt, exit status 130."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def note(text: str) -> None:
    """Write one line of information for a person to stderr (never mixed with the data)."""
    sys.stderr.write(f'{text}\n')
    sys.stderr.flush()
