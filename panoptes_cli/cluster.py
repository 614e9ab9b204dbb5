"""Batch work on a Dask distributed cluster: one task a file, results as they finish.

The batch commands run their per-file function in a local process pool by
default; given a scheduler address (``--scheduler`` or
``PANOPTES_DASK_SCHEDULER``) the same function runs on the cluster's workers
instead. Workers open the paths they are given, so the files must sit on
storage every worker sees under the same path; relative paths are made
absolute here and turned back into the caller's spelling in the results, so a
cluster run prints exactly the records a local run prints.

Dask is imported only here, and only when a scheduler is given: commands
without ``--scheduler`` never load it.

>>> scheduler_address('tcp://10.0.0.5:8786')
'tcp://10.0.0.5:8786'
>>> scheduler_address('10.0.0.5')
'tcp://10.0.0.5:8786'
>>> scheduler_address('http://example.org')
Traceback (most recent call last):
...
panoptes_cli.error.IllegalValue: IllegalValue: not a Dask scheduler address: 'http://example.org'; expected tcp://HOST:PORT
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from panoptes_cli.error import IllegalValue, PanError

SCHEDULER_VARIABLE = 'PANOPTES_DASK_SCHEDULER'
DEFAULT_PORT = 8786
# How long to wait for the scheduler to answer before giving up on the batch.
CONNECT_TIMEOUT = 10

_ADDRESS = re.compile(r'^(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[0-9a-fA-F:]+\]|[\w.-]+)'
                      r'(?::(?P<port>\d{1,5}))?/?$')


class ClusterError(PanError):
    """The Dask scheduler could not be reached or refused the batch."""


class WorkerTaskError(PanError):
    """One file failed on a worker; the message names the worker."""


def scheduler_address(value: str | None) -> str | None:
    """Return the scheduler address to use (the option, else the environment), or None.

    ``HOST`` and ``HOST:PORT`` get the ``tcp://`` scheme and the default port
    8786; anything that is not an address raises IllegalValue (a usage error).
    """
    value = value if value is not None else os.environ.get(SCHEDULER_VARIABLE) or None
    if value is None:
        return None
    match = _ADDRESS.match(value.strip())
    if not match or (match['port'] and not 0 < int(match['port']) < 65536):
        raise IllegalValue(f'not a Dask scheduler address: {value!r}; expected tcp://HOST:PORT')
    return f"{match['scheme'] or 'tcp'}://{match['host']}:{match['port'] or DEFAULT_PORT}"


def redact(address: str) -> str:
    """Return the address without any user:password part, for messages and logs."""
    return re.sub(r'//[^@/]*@', '//', address)


@dataclass
class Outcome:
    """What one item gave: its result, or the error that stopped it."""

    item: str
    result: Any = None
    error: BaseException | None = None


def map_on_cluster(function: Callable[[str], Any], items: Iterable[str], address: str, *,
                   programs: Iterable[str] = ()) -> Iterator[Outcome]:
    """Run ``function(item)`` for every item on the cluster; yield Outcomes as tasks finish.

    ``function`` must be importable by the workers (a module-level function of
    panoptes_cli). Items are paths: a relative one is sent as its absolute
    form and comes back in the caller's spelling. ``programs`` names the
    external programs the function runs: a worker without one of them is
    reported once (a warning) and given none of the tasks; when no worker has
    them, every item fails with that reason. A worker that dies mid-task has
    its tasks rerun elsewhere by Dask; an item is yielded exactly once.
    Closing the generator (or Ctrl-C while iterating) cancels what is pending.
    """
    from distributed import Client, as_completed

    from panoptes_cli.logging import logger

    items = list(items)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f'Dask scheduler {redact(address)}: cannot connect: '
                           f'{exc or type(exc).__name__}; is `dask scheduler` running there?'
                           ) from exc
    futures = {}
    try:
        workers = _capable_workers(client, list(programs), logger)
        if workers == []:
            missing = ', '.join(programs)
            for item in items:
                yield Outcome(item, error=WorkerTaskError(
                    f'{item}: no worker of {redact(address)} has {missing} installed'))
            return
        for item in items:
            future = client.submit(_run_on_worker, function, _absolute(item), pure=False,
                                   workers=workers, allow_other_workers=False)
            futures[future] = item
        for future in as_completed(futures, loop=client.loop):
            item = futures.pop(future)
            yield _outcome(item, future)
    finally:
        if futures:
            client.cancel(list(futures), force=True)
        client.close()


def _outcome(item: str, future) -> Outcome:
    """Turn a finished future into the caller's Outcome."""
    if future.status == 'error':
        # The worker died running it too often (KilledWorker), or Dask itself failed.
        exc = future.exception()
        return Outcome(item, error=WorkerTaskError(f'{item}: {type(exc).__name__}: {exc}'))
    result, error = future.result()
    if error is not None:
        return Outcome(item, error=error)
    return Outcome(item, result=_in_callers_spelling(result, item))


def _capable_workers(client, programs: list[str], logger) -> list[str] | None:
    """Return the workers that have every program (None: all of them, no check needed)."""
    if not programs:
        return None
    missing_by_worker = client.run(_missing_programs, programs)
    capable = []
    for worker, missing in sorted(missing_by_worker.items()):
        if missing:
            logger.warning(f'worker {worker} lacks {", ".join(missing)}; '
                           'it gets no tasks of this batch')
        else:
            capable.append(worker)
    return capable


def _missing_programs(programs: list[str]) -> list[str]:
    """Name the programs this worker cannot find on its PATH (runs on the worker)."""
    return [name for name in programs if shutil.which(name) is None]


def _run_on_worker(function: Callable[[str], Any], path: str):
    """Call the item function on a worker: (result, None) or (None, error naming the worker)."""
    try:
        return function(path), None
    except Exception as exc:  # noqa: BLE001 - every failure is that file's result
        return None, _worker_error(path, exc)


def _worker_error(path: str, exc: BaseException) -> WorkerTaskError:
    """Describe a failure the way the command layer would, plus the worker's address."""
    from distributed import get_worker

    if isinstance(exc, PanError) and exc.msg:
        reason = str(exc.msg)
    elif isinstance(exc, OSError) and exc.strerror:
        reason = f'{exc.filename if exc.filename is not None else path}: {exc.strerror}'
    else:
        reason = f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__
    return WorkerTaskError(f'{reason} (on worker {get_worker().address})')


def _absolute(path: str) -> str:
    return os.path.abspath(path)


def _in_callers_spelling(result: Any, item: str) -> Any:
    """Give paths in a result record back as the caller spelled them (relative stays relative)."""
    if os.path.isabs(item) or not isinstance(result, dict):
        return result
    absolute_item = os.path.abspath(item)
    prefix = os.path.abspath('.') + os.sep

    def spelled(value):
        if value == absolute_item:
            return item
        if isinstance(value, str) and value.startswith(prefix):
            return os.path.relpath(value)
        return value

    return {key: spelled(value) for key, value in result.items()}
