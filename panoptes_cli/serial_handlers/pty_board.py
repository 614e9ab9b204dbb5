"""A simulated board behind a pseudo-terminal, so any serial program can open it as a device."""

import errno
import os
import queue
import select
import threading
import tty

from panoptes_cli.error import PanError
from panoptes_cli.files import atomic_path
from panoptes_cli.logging import logger
from panoptes_cli.serial_handlers.arduino_board import DEFAULT_CHUNK_SIZE
from panoptes_cli.serial_handlers.board_runner import SimulatedBoard


class PtyBoard:
    """A simulated board behind a pseudo-terminal, at ``self.port`` (``/dev/pts/N``).

    Programs open ``port`` as a serial device: they read the board's reports
    and their writes reach the board as relay commands. Like a real board, it
    transmits whether or not anyone listens; the kernel keeps a few kilobytes
    for a late reader (pyserial discards them when it opens the port) and
    drops the rest.

    Args:
        board: ``telemetry``, ``camera`` or ``json_object``.
        chunk_size: Bytes sent at a time.
        link: Also make this path a symbolic link to the pty (a stable name,
            as udev gives real boards); removed again by :meth:`stop`. An
            existing symbolic link is replaced; any other file is an error.
        **kwargs: Passed to :class:`SimulatedBoard`.
    """

    def __init__(self, board: str = 'telemetry', chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                 link: str | os.PathLike | None = None, **kwargs):
        self.simulated = SimulatedBoard(board, chunk_size, **kwargs)
        self.link = os.fspath(link) if link is not None else None
        self.port = None
        self.reports_sent = 0
        self._master = None
        self._threads = []
        self._sent_event = threading.Condition()

    def start(self) -> 'PtyBoard':
        """Open the pty, make the link and start the board."""
        master, slave = os.openpty()
        try:
            # Raw mode before anyone opens it: no echo of our own output back
            # to us as commands, no newline translation.
            tty.setraw(slave)
            self.port = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        if self.link:
            try:
                self._make_link()
            except BaseException:
                self.stop()
                raise
        self.simulated.start()
        for target, name in ((self._send, 'pty writer'), (self._receive, 'pty reader')):
            thread = threading.Thread(target=target, daemon=True, name=name)
            thread.start()
            self._threads.append(thread)
        return self

    def _make_link(self) -> None:
        if os.path.lexists(self.link) and not os.path.islink(self.link):
            raise PanError(f'cannot link {self.link} to {self.port}: it exists and is not a '
                           'symbolic link; choose another --link path')
        with atomic_path(self.link) as temporary:
            os.symlink(self.port, temporary)

    def _send(self) -> None:
        """Copy the board's chunks to the pty as they come."""
        while not self.simulated.stop_event.is_set():
            chunk = self.simulated.read_chunk(timeout=0.2)
            if not chunk:
                continue
            try:
                os.write(self._master, chunk)
            except OSError as err:
                # EAGAIN: the buffer is full as nobody reads; EIO: nobody has
                # the port open. A real board's bytes would be lost too.
                if err.errno not in (errno.EAGAIN, errno.EIO):
                    raise
            if b'\n' in chunk:
                with self._sent_event:
                    self.reports_sent += chunk.count(b'\n')
                    self._sent_event.notify_all()

    def _receive(self) -> None:
        """Pass what programs write to the pty on to the board."""
        while not self.simulated.stop_event.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError as err:
                if err.errno == errno.EAGAIN:
                    continue
                if err.errno != errno.EIO:
                    raise
                # Nobody has the port open: the master stays "readable" with
                # EIO until someone does, so poll gently.
                self.simulated.stop_event.wait(0.05)
                continue
            try:
                self.simulated.write(data, timeout=1)
            except queue.Full:
                logger.warning('Simulated board: command queue full, dropped {!r}', data)

    def wait(self, count: int | None = None) -> None:
        """Block until ``count`` reports have been sent (forever when None) or :meth:`stop`."""
        with self._sent_event:
            while not self.simulated.stop_event.is_set():
                if count is not None and self.reports_sent >= count:
                    return
                self._sent_event.wait(timeout=0.5)

    def stop(self) -> None:
        """Stop the board, close the pty (the port disappears) and remove the link."""
        self.simulated.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self.link and self.port and os.path.islink(self.link) \
                and os.readlink(self.link) == self.port:
            os.unlink(self.link)
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def __enter__(self) -> 'PtyBoard':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
