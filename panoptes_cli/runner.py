"""Run one function over many items, several at once, yielding results as they finish.

Every batch command (``fits pack``, ``cr2 convert``, ``image pretty`` ...) goes
through :func:`make_runner`: one place decides how work is spread. The local
runner uses a pool of processes on this machine (one item at a time in this
process when ``jobs`` is 1). Another backend (e.g. a Dask cluster) is a class
with the same ``map_unordered`` method, returned by :func:`make_runner`.

>>> runner = make_runner(jobs=1)
>>> sorted(outcome.value for outcome in runner.map_unordered(abs, [-2, 1]))
[1, 2]
"""

import contextlib
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol


class Outcome(NamedTuple):
    """What ``function(item)`` gave: its value, or the exception it raised."""

    item: Any
    value: Any = None
    error: BaseException | None = None


class Runner(Protocol):
    """The interface every backend provides."""

    def map_unordered(self, function: Callable, items: Iterable) -> Iterator[Outcome]:
        """Yield one Outcome per item, in the order they finish.

        ``items`` may be a generator still receiving them (names read from a
        pipe): work starts on each as it arrives. ``function`` must be
        picklable (a module-level function or a functools.partial of one).
        Closing the iterator early cancels the items not started.
        """


def make_runner(jobs: int | None = None, initializer: Callable[[], None] | None = None) -> Runner:
    """Return the runner for ``jobs`` items at once (default: one per CPU core).

    ``initializer`` runs once in each worker process as it starts.
    """
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f'jobs={jobs}: must be at least 1')
    return LocalRunner(jobs, initializer)


def _start_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    """Make a pool worker die with its parent (no idle orphans after a kill -9), then set it up."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    if initializer is not None:
        initializer()


def _call(function: Callable, item) -> Outcome:
    """Run one item, returning its exception rather than raising it (in a worker process)."""
    try:
        return Outcome(item, function(item))
    except Exception as exc:  # noqa: BLE001 - handed back to the caller to judge
        return Outcome(item, error=_picklable(exc))


def _picklable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to pickle means "send the text instead"
        return RuntimeError(f'{type(exc).__name__}: {exc}')
    return exc


class LocalRunner:
    """A pool of ``jobs`` processes on this machine; ``jobs=1`` runs in this process.

    With ``threads``, a pool of ``jobs`` threads instead (even for one job), for
    work that waits on programs of its own: ``function`` need not be picklable
    then. Threads cannot be stopped from outside, so when the iteration ends
    (closed early, or Ctrl-C) ``cancel`` is called to end the items running,
    and the runner waits for them.
    """

    def __init__(self, jobs: int, initializer: Callable[[], None] | None = None,
                 threads: bool = False, cancel: Callable[[], None] | None = None):
        self.jobs = jobs
        self.initializer = initializer
        self.threads = threads
        self.cancel = cancel

    def map_unordered(self, function: Callable, items: Iterable) -> Iterator[Outcome]:
        if self.jobs == 1 and not self.threads:
            for item in items:
                yield _call(function, item)
            return
        yield from self._pooled(function, items)

    def _pool(self):
        if self.threads:
            from concurrent.futures import ThreadPoolExecutor

            return ThreadPoolExecutor(self.jobs, thread_name_prefix='runner')
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork: workers start at once with what this process has imported already.
        return ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context('fork'),
                                   initializer=_start_worker,
                                   initargs=(os.getpid(), self.initializer))

    def _pooled(self, function, items):
        pool = self._pool()
        # Start the workers now, from this thread, before the feeder thread exists.
        pool.submit(int).result()
        done: queue.Queue = queue.Queue()
        # At most two items waiting per worker: names are read only as work frees up.
        slots = threading.BoundedSemaphore(2 * self.jobs)
        stop = threading.Event()
        feeder = threading.Thread(target=self._feed, daemon=True, name='runner-feed',
                                  args=(pool, function, items, done, slots, stop))
        feeder.start()
        try:
            while True:
                message = done.get()
                if message is _FINISHED:
                    break
                if isinstance(message, _FeedFailed):
                    raise message.error
                slots.release()
                yield message.result()
        finally:
            stop.set()
            if self.cancel is not None:
                self.cancel()
            pool.shutdown(wait=self.threads, cancel_futures=True)
            with contextlib.suppress(ValueError):
                slots.release()  # unblock a feeder waiting for a slot

    @staticmethod
    def _feed(pool, function, items, done, slots, stop):
        """Submit items as they arrive; then say so (after the last result)."""
        pending = set()
        lock = threading.Lock()
        fed_all = threading.Event()

        def finished(future):
            with lock:
                pending.discard(future)
                last = fed_all.is_set() and not pending
            done.put(future)
            if last:
                done.put(_FINISHED)

        try:
            for item in items:
                slots.acquire()
                if stop.is_set():
                    return
                future = pool.submit(_call, function, item)
                with lock:
                    pending.add(future)
                future.add_done_callback(finished)
        except BaseException as exc:  # noqa: BLE001 - reading items failed: tell the consumer
            done.put(_FeedFailed(exc))
            return
        with lock:
            fed_all.set()
            last = not pending
        if last:
            done.put(_FINISHED)


_FINISHED = object()


class _FeedFailed(NamedTuple):
    error: BaseException
