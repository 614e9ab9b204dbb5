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
from typing import Any, NamedTuple

from panoptes_cli.error import IllegalValue, PanError
from panoptes_cli.runner import Outcome

SCHEDULER_VARIABLE = 'PANOPTES_DASK_SCHEDULER'
DEFAULT_PORT = 8786
# How long to wait for the scheduler to answer before giving up on the batch.
CONNECT_TIMEOUT = 10
# How long a batch waits for a first worker to join a scheduler that has none.
WORKER_WAIT = 120

_ADDRESS = re.compile(r'^(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[0-9a-fA-F:]+\]|[\w.-]+)'
                      r'(?::(?P<port>\d{1,5}))?/?$')


class ClusterError(PanError):
    """The Dask scheduler could not be reached or refused the batch."""


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


class DaskRunner:
    """Runs a batch's items as tasks on a Dask cluster: the ``--scheduler`` backend.

    Same interface as the local runner (``map_unordered``), so a command is
    unaware of where its files are processed. ``programs`` names the external
    programs the function runs: a worker without one of them is named once in a
    warning and given none of the tasks; when no worker has them, every item
    fails with that reason.
    """

    def __init__(self, address: str, programs: Iterable[str] = ()):
        self.address = address
        self.programs = list(programs)

    def map_unordered(self, function: Callable[[Any], Any], items: Iterable) -> Iterator:
        """Yield one Outcome per item as its task finishes; closing the iterator cancels the rest.

        Items are submitted as they arrive (a pipe is read while tasks run). A
        relative path is sent as its absolute form and comes back in the
        caller's spelling, in the result and in the error. A worker that dies
        mid-task has its tasks rerun elsewhere by Dask; each item is yielded
        exactly once.
        """
        import threading

        from distributed import Client, as_completed

        try:
            client = Client(self.address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f'Dask scheduler {redact(self.address)}: cannot connect: '
                               f'{exc or type(exc).__name__}; is `dask scheduler` running there?'
                               ) from exc
        # Results are fetched in batches as tasks finish (one round trip per future is slow).
        finished = as_completed(loop=client.loop, with_results=True, raise_errors=False)
        feed = _Feed(items={}, unrunnable=[], problem=[], changed=threading.Event(),
                     stop=threading.Event(), done=threading.Event())
        try:
            self._wait_for_a_worker(client)
            workers = self._capable_workers(client)
            threading.Thread(target=self._submit_all, daemon=True, name='dask-submit',
                             args=(client, function, items, workers, finished, feed)).start()
            while True:
                fed_all = feed.done.is_set()
                for future, value in finished:
                    yield _outcome(feed.items.pop(future), future, value)
                while feed.unrunnable:
                    yield feed.unrunnable.pop()
                if feed.problem:
                    raise feed.problem[0]
                if fed_all and finished.is_empty():
                    return
                feed.changed.wait()
                feed.changed.clear()
        finally:
            feed.stop.set()
            if feed.items:
                client.cancel(list(feed.items), force=True)
            client.close()

    def _submit_all(self, client, function, items, workers, finished, feed):
        """Submit each item as it is read (a pipe streams); say when all are in."""
        try:
            for item in items:
                if feed.stop.is_set():
                    return
                if workers == []:
                    feed.unrunnable.append(Outcome(item, error=self._none_capable(item)))
                else:
                    future = client.submit(_run_on_worker, function, _for_workers(item),
                                           pure=False, workers=workers,
                                           allow_other_workers=False)
                    feed.items[future] = item
                    finished.add(future)
                feed.changed.set()
        except BaseException as exc:  # noqa: BLE001 - reading items failed: tell the consumer
            feed.problem.append(exc)
        finally:
            feed.done.set()
            feed.changed.set()

    def _wait_for_a_worker(self, client) -> None:
        """Wait until the cluster has a worker (one started with the batch may still be joining)."""
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT)
        except TimeoutError:
            raise ClusterError(f'Dask scheduler {redact(self.address)}: no worker joined within '
                               f'{WORKER_WAIT} s; start one with `dask worker {self.address}`'
                               ) from None

    def _none_capable(self, item: str) -> ClusterError:
        return ClusterError(f'{item}: no worker of {redact(self.address)} has '
                            f'{", ".join(self.programs)} installed')

    def _capable_workers(self, client) -> list[str] | None:
        """Return the workers that have every program (None: any worker will do)."""
        if not self.programs:
            return None
        from panoptes_cli.logging import logger

        capable = []
        for worker, missing in sorted(client.run(_missing_programs, self.programs).items()):
            if missing:
                logger.warning(f'worker {worker} lacks {", ".join(missing)}; '
                               'it gets no tasks of this batch')
            else:
                capable.append(worker)
        return capable


class _Feed(NamedTuple):
    """What the submitting thread shares with the consumer of results."""

    items: dict  # future -> the item as the caller spelled it
    unrunnable: list  # Outcomes of items no worker can run
    problem: list  # the exception that stopped reading the items
    changed: Any  # threading.Event: something was added
    stop: Any  # threading.Event: the consumer went away
    done: Any  # threading.Event: every item was read


def _for_workers(item):
    """A path as the workers must open it (absolute: their working directory is not ours).

    Other items (e.g. the watcher's frames) go as they are.
    """
    return os.path.abspath(item) if isinstance(item, str) else item


def _outcome(item, future, value) -> Outcome:
    """Turn a finished future into the caller's Outcome, paths spelled as the caller did."""
    if future.status == 'error':
        # The worker died running it too often (KilledWorker), or Dask itself failed.
        return Outcome(item, error=ClusterError(f'{item}: {type(value).__name__}: {value}'))
    result, error = value
    if not isinstance(item, str):
        return Outcome(item, value=result, error=error)
    absolute = os.path.abspath(item)
    if error is not None:
        return Outcome(item, error=_respelled_error(error, absolute, item))
    return Outcome(item, value=_respelled(value=result, absolute=absolute, item=item))


def _missing_programs(programs: list[str]) -> list[str]:
    """Name the programs this worker cannot find on its PATH (runs on the worker)."""
    return [name for name in programs if shutil.which(name) is None]


def _run_on_worker(function: Callable[[str], Any], path: str):
    """Call the item function on a worker: (value, None), or (None, the error naming the worker)."""
    try:
        return function(path), None
    except Exception as exc:  # noqa: BLE001 - every failure is that file's result
        from distributed import get_worker

        return None, _naming_worker(exc, get_worker().address)


def _naming_worker(exc: Exception, worker: str) -> Exception:
    """The same exception (same type, so callers judge it alike) with the worker in its text."""
    import copy
    import pickle

    where = f'on worker {worker}'
    named = copy.copy(exc)
    if isinstance(named, PanError):
        named.msg = f'{named.msg} ({where})' if named.msg else where
    elif isinstance(named, OSError) and named.strerror:
        named.strerror = f'{named.strerror} ({where})'
    else:
        named.args = (f'{exc} ({where})',)
    try:
        pickle.loads(pickle.dumps(named))
    except Exception:  # noqa: BLE001 - an exception that cannot travel goes back as its text
        return PanError(f'{type(exc).__name__}: {exc} ({where})')
    return named


def _respelled(value: Any, absolute: str, item: str) -> Any:
    """Give paths in a result back as the caller spelled them (relative stays relative)."""
    if absolute == item:
        return value
    prefix = os.path.abspath('.') + os.sep

    def spelled(field):
        if not isinstance(field, str):
            return field
        if field.startswith(prefix) and field != absolute:
            return os.path.relpath(field)
        return field.replace(absolute, item)

    if isinstance(value, dict):
        return {key: spelled(field) for key, field in value.items()}
    if isinstance(value, list):  # one task's several results (e.g. a header per HDU)
        return [_respelled_error(entry, absolute, item) if isinstance(entry, BaseException)
                else _respelled(entry, absolute, item) for entry in value]
    return spelled(value)


def _respelled_error(error: BaseException, absolute: str, item: str) -> BaseException:
    """The error with the absolute path the worker saw replaced by the caller's spelling."""
    if absolute == item:
        return error
    if isinstance(error, OSError) and error.filename == absolute:
        error.filename = item
    if isinstance(error, PanError) and isinstance(error.msg, str):
        error.msg = error.msg.replace(absolute, item)
    error.args = tuple(arg.replace(absolute, item) if isinstance(arg, str) else arg
                       for arg in error.args)
    return error
