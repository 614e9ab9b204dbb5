"""Run a simulated board in a thread, read and written in process through byte queues."""

import queue
import threading
from collections.abc import Iterator

from panoptes_cli.serial_handlers.arduino_board import (
    BAUDRATE,
    DEFAULT_CHUNK_SIZE,
    REPORT_INTERVAL,
    ArduinoSimulator,
    board_message,
)


def drain_queue(q: queue.Queue) -> list:
    """Take every item the queue holds now, without waiting; return them in order."""
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


class SimulatedBoard:
    """A simulated board running in a thread, read and written through byte queues.

    >>> import json
    >>> with SimulatedBoard('camera', report_interval=0.2) as board:
    ...     _ = board.write(b'camera_01,off\\n')
    ...     reports = [json.loads(line) for _, line in zip(range(2), board.lines())]
    >>> [(r['report_num'], r['camera_00'], r['camera_01']) for r in reports]
    [(1, 1, 1), (2, 1, 0)]

    Args:
        board: ``telemetry``, ``camera`` or ``json_object``.
        chunk_size: Bytes sent at a time.
        baudrate: Simulated line speed.
        report_interval: Seconds between reports.
        cut_first_report: Cut the start off the first report.
        read_buffer_size: Chunks the output queue holds before chunks are dropped.
        write_buffer_size: Writes the command queue holds before writes time out.
    """

    def __init__(self, board: str = 'telemetry', chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                 baudrate: int = BAUDRATE, report_interval: float = REPORT_INTERVAL,
                 cut_first_report: bool = False, read_buffer_size: int = 10000,
                 write_buffer_size: int = 100):
        self.board = board
        self.json_queue = queue.Queue(maxsize=read_buffer_size)
        self.relay_queue = queue.Queue(maxsize=write_buffer_size)
        self.stop_event = threading.Event()
        self.simulator = ArduinoSimulator(
            board_message(board), self.relay_queue, self.json_queue, chunk_size, self.stop_event,
            baudrate=baudrate, report_interval=report_interval, cut_first_report=cut_first_report)
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the board's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> 'SimulatedBoard':
        """Start the board's thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.simulator.run, daemon=True,
                                            name=f'simulated {self.board} board')
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the board's thread and wait for it."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> 'SimulatedBoard':
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Send bytes (relay commands) to the board; return how many.

        Raises:
            queue.Full: If the board does not take them within ``timeout`` seconds.
        """
        data = bytes(data)
        if data:
            self.relay_queue.put(data, timeout=timeout)
        return len(data)

    def read_chunk(self, timeout: float | None = None) -> bytes:
        """Return the next chunk the board sends, or ``b''`` after ``timeout`` seconds."""
        try:
            return self.json_queue.get(timeout=timeout)
        except queue.Empty:
            return b''

    def lines(self) -> Iterator[str]:
        """Yield the board's report lines (without line ends) as they complete."""
        pending = bytearray()
        while not self.stop_event.is_set():
            chunk = self.read_chunk(timeout=0.2)
            pending.extend(chunk)
            while (end := pending.find(b'\n')) >= 0:
                line = pending[:end].decode('ascii', errors='replace').rstrip('\r')
                del pending[:end + 1]
                yield line

    def take_commands_from(self, stream) -> threading.Thread:
        """Forward the lines read from a binary stream to the board, in a daemon thread."""

        def forward():
            for line in iter(stream.readline, b''):
                if self.stop_event.is_set():
                    return
                self.write(line if line.endswith(b'\n') else line + b'\n', timeout=5)

        thread = threading.Thread(target=forward, daemon=True, name='board commands')
        thread.start()
        return thread
