"""Watch directories for new frames and run each through the pipeline, several at once.

:class:`FrameWatcher` notices files (inotify through the watchdog library, or
polling for network file systems) and hands a file over only once it is
complete: its writer closed it (inotify's close-write) with nothing written
since, or its size and modification time stayed unchanged for ``settle``
seconds (the only test when polling, and for files already there at start).

:func:`watch` feeds complete frames to :func:`panoptes_cli.images.pipeline.process_frame`
through the project's runner (``jobs`` frames at once, in worker processes)
and yields each frame's events as it finishes. It stops when ``stop`` is set,
after finishing the frames in hand, or with ``once`` when the frames present
at the start are done.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from panoptes_cli.images.pipeline import (
    PipelineOptions, frame_for, pending_steps, process_frame, reuse_freed_memory)

PathLike = str | os.PathLike


class FrameWatcher:
    """Collect the files appearing in some directories; report those complete.

    With ``live=False`` only the files there at start are considered (``--once``).
    """

    def __init__(self, directories: Iterable[PathLike], settle: float = 2.0,
                 poll: bool = False, live: bool = True, poll_interval: float = 1.0):
        self.directories = [Path(d) for d in directories]
        for directory in self.directories:
            if not directory.is_dir():
                raise FileNotFoundError(2, 'No such directory', os.fspath(directory))
        self.settle = settle
        self._lock = threading.Lock()
        # path -> (time a close-write was seen or None, time of the last event)
        self._candidates: dict[Path, tuple[float | None, float]] = {}
        self._observer = None
        if live:
            self._observer = self._start_observer(poll, poll_interval)
        for directory in self.directories:
            for entry in os.scandir(directory):
                if entry.is_file():
                    self._candidates.setdefault(Path(entry.path), (None, 0.0))

    def _start_observer(self, poll: bool, poll_interval: float):
        from watchdog.events import FileSystemEventHandler

        if poll:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=poll_interval)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if not event.is_directory:
                    watcher._noticed(event.event_type, event.src_path,
                                     getattr(event, 'dest_path', ''))

        for directory in self.directories:
            observer.schedule(Handler(), os.fspath(directory), recursive=False)
        observer.start()
        return observer

    def _noticed(self, kind: str, path: str, dest: str) -> None:
        now = time.time()
        with self._lock:
            if kind == 'moved':
                self._candidates.pop(Path(path), None)
                self._candidates[Path(dest)] = (now, now)  # a rename delivers a whole file
            elif kind == 'deleted':
                self._candidates.pop(Path(path), None)
            elif kind == 'closed':
                self._candidates[Path(path)] = (now, now)
            elif kind in ('created', 'modified'):
                self._candidates[Path(path)] = (None, now)

    def ready(self) -> list[Path]:
        """Return (and forget) the candidate files that are complete now."""
        now = time.time()
        complete = []
        with self._lock:
            for path, (closed_at, last_event) in list(self._candidates.items()):
                try:
                    modified = path.stat().st_mtime
                except FileNotFoundError:
                    del self._candidates[path]
                    continue
                if closed_at is not None and last_event <= closed_at or \
                        now - max(modified, last_event) >= self.settle:
                    complete.append(path)
                    del self._candidates[path]
        return sorted(complete)

    def waiting(self) -> int:
        """Return the number of files seen but not complete yet."""
        with self._lock:
            return len(self._candidates)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None


def _frames(watcher: FrameWatcher, options: PipelineOptions, stop: threading.Event,
            once: bool, tick: float) -> Iterator:
    """Yield each complete frame with work left, once; end when stopped (or done, with once)."""
    taken = set()
    while not stop.is_set():
        for path in watcher.ready():
            frame = frame_for(path, options.output_dir)
            if frame is None or frame.source in taken:
                continue
            taken.add(frame.source)
            if pending_steps(frame, options):
                yield frame
        if once and not watcher.waiting():
            return
        stop.wait(tick)


def _become_worker() -> None:
    """Leave stopping to the watch: a terminal's Ctrl-C reaches every process of the
    group, and the frames in hand must finish. SIGTERM sent to a worker itself ends it.
    A worker does nothing but frames: it keeps their memory from one to the next."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    reuse_freed_memory()


def watch(directories: Iterable[PathLike], options: PipelineOptions, jobs: int = 1,
          once: bool = False, settle: float = 2.0, poll: bool = False,
          stop: threading.Event | None = None, tick: float = 0.25,
          scheduler: str | None = None) -> Iterator[list[dict]]:
    """Run every new frame in ``directories`` through the pipeline; yield each frame's events.

    Frames run ``jobs`` at a time here, or, with ``scheduler`` (a Dask scheduler
    address), as tasks on that cluster: give absolute directories then, on
    storage the workers share. A frame whose worker died unexpectedly gives one
    event with its ``error``.
    """
    stop = stop or threading.Event()
    watcher = FrameWatcher(directories, settle=settle, poll=poll, live=not once)
    try:
        if scheduler:
            from panoptes_cli.cluster import DaskRunner

            needed = ['solve-field', 'wcsinfo'] if 'solve' in options.steps else []
            runner = DaskRunner(scheduler, programs=needed)
        else:
            from panoptes_cli.runner import make_runner

            runner = make_runner(jobs, initializer=_become_worker)
            if jobs == 1:  # frames run in this process
                reuse_freed_memory()
        work = functools.partial(process_frame, options=options)
        for outcome in runner.map_unordered(work, _frames(watcher, options, stop, once, tick)):
            if outcome.error is not None:
                yield [{'filename': os.fspath(outcome.item.source), 'step': 'frame',
                        'error': f'{type(outcome.error).__name__}: {outcome.error}'}]
            else:
                yield outcome.value
    finally:
        watcher.close()
