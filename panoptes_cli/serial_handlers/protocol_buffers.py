"""The ``buffers://`` serial URL: a device whose input and output a test controls.

Reading from the device takes bytes from the "r" buffer, which a test fills
with :func:`SetRBufferValue`; writing appends to the "w" buffer, which a test
inspects with :func:`GetWBufferValue`. The buffers are shared by every
``buffers://`` device in the process and guarded by locks.

The buffers start empty, so (unlike panoptes-utils 0.2.29, where reading
before :func:`ResetBuffers` failed with AttributeError) no manual reset is
needed before first use.

>>> import serial
>>> from panoptes_cli.serial_handlers import protocol_buffers as pb
>>> pb.ResetBuffers(b'line one\\nline two\\n')
>>> device = serial.serial_for_url('buffers://')
>>> device.in_waiting
18
>>> device.readline()
b'line one\\n'
>>> device.write(b'relay,0\\n')
8
>>> pb.GetWBufferValue()
b'relay,0\\n'
>>> device.read(100), device.read(100)
(b'line two\\n', b'')
"""

import io
import threading

from panoptes_cli.serial_handlers import NoOpSerial

_r_lock = threading.Lock()
_w_lock = threading.Lock()
_r_buffer = io.BytesIO()
_w_buffer = io.BytesIO()


def ResetBuffers(read_data: bytes | None = None) -> None:  # noqa: N802 - the manual's name
    """Empty the w buffer and set the r buffer to ``read_data`` (default: empty)."""
    global _w_buffer
    SetRBufferValue(read_data)
    with _w_lock:
        _w_buffer = io.BytesIO()


def SetRBufferValue(data: bytes | None) -> None:  # noqa: N802 - the manual's name
    """Make ``data`` what the next reads of any ``buffers://`` port return.

    Raises:
        TypeError: If ``data`` is neither bytes, bytearray nor None.
    """
    global _r_buffer
    if data is not None and not isinstance(data, (bytes, bytearray)):
        raise TypeError(f'data must be a bytes or bytearray object, not {type(data).__name__}')
    with _r_lock:
        _r_buffer = io.BytesIO(bytes(data or b''))


def GetWBufferValue() -> bytes:  # noqa: N802 - the manual's name
    """Return everything written to ``buffers://`` ports since the last reset."""
    with _w_lock:
        return _w_buffer.getvalue()


class BuffersSerial(NoOpSerial):
    """A serial device reading from the shared r buffer and writing to the w buffer.

    Reads never block: when the r buffer is exhausted they return what is left
    (possibly nothing), as a device that has nothing more to say.
    """

    @property
    def in_waiting(self) -> int:
        """How many bytes of the r buffer are left to read."""
        self._check_open()
        with _r_lock:
            return len(_r_buffer.getbuffer()) - _r_buffer.tell()

    def read(self, size: int = 1) -> bytes:
        """Return the next ``size`` bytes of the r buffer, or what is left of it (maybe nothing)."""
        self._check_open()
        with _r_lock:
            return _r_buffer.read(size)

    def write(self, data) -> int:
        """Append data to the w buffer.

        Args:
            data: The data to write (bytes or bytearray).

        Returns:
            Number of bytes written.

        Raises:
            TypeError: If ``data`` is not bytes or bytearray.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data must be a bytes or bytearray object, not {type(data).__name__}')
        self._check_open()
        with _w_lock:
            return _w_buffer.write(data)

    def reset_input_buffer(self) -> None:
        """Discard what is left in the r buffer."""
        with _r_lock:
            _r_buffer.seek(0, io.SEEK_END)


Serial = BuffersSerial
