"""PySerial URL handlers for simulated and test serial devices.

Each ``protocol_XYZ.py`` module here provides the class ``Serial`` (or a
``serial_class_for_url`` function) that ``serial.serial_for_url('XYZ://...')``
uses, once ``'panoptes_cli.serial_handlers'`` is in
``serial.protocol_handler_packages``. Importing this package (or
:mod:`panoptes_cli.rs232`) puts it there.

- ``no_op://``: a /dev/null device (:class:`NoOpSerial`).
- ``buffers://``: reads from and writes to in-memory buffers a test controls.
- ``hooked://``: a test supplies the class to use.
- ``arduinosimulator://?board=telemetry|camera|json_object``: a simulated
  PANOPTES Arduino board reporting JSON every 2 s at 9600 baud.

>>> import serial
>>> import panoptes_cli.serial_handlers
>>> 'panoptes_cli.serial_handlers' in serial.protocol_handler_packages
True
>>> device = serial.serial_for_url('no_op://')
>>> device.is_open, device.read(10), device.write(b'ignored')
(True, b'', 0)
>>> device.close()
"""

import serial
from serial import serialutil

PACKAGE = __name__


def register() -> None:
    """Put this package in ``serial.protocol_handler_packages`` (once).

    Idempotent, so callers that need the URL handlers can call it even when a
    test has removed the package from the list again.
    """
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)


class NoOpSerial(serialutil.SerialBase):
    """No-op implementation of PySerial's SerialBase.

    Provides no-op implementation of various methods that SerialBase expects
    to have implemented by the sub-class. Can be used as is for a /dev/null
    type of behavior: reads return nothing, writes are discarded.
    """

    @property
    def in_waiting(self) -> int:
        """The number of input bytes available to read immediately."""
        return 0

    def _check_open(self) -> None:
        """Raise PortNotOpenError unless the port is open (for reads and writes)."""
        if not self.is_open:
            raise serialutil.PortNotOpenError()

    def open(self) -> None:
        """Open port.

        Raises:
            SerialException if the port cannot be opened.
        """
        self.is_open = True

    def close(self) -> None:
        """Close port immediately."""
        self.is_open = False

    def read(self, size: int = 1) -> bytes:
        """Read size bytes.

        If a timeout is set it may return fewer characters than requested.
        With no timeout it will block until the requested number of bytes
        is read.

        Args:
            size: Number of bytes to read.

        Returns:
            Bytes read from the port, of type 'bytes'.

        Raises:
            SerialTimeoutException: In case a write timeout is configured for
                the port and the time is exceeded.
        """
        self._check_open()
        return b''

    def write(self, data) -> int:
        """Write data (discarded).

        Args:
            data: The data to write.

        Returns:
            Number of bytes written.

        Raises:
            SerialTimeoutException: In case a write timeout is configured for
                the port and the time is exceeded.
        """
        self._check_open()
        return 0

    def reset_input_buffer(self) -> None:
        """Remove any accumulated bytes from the device."""

    def reset_output_buffer(self) -> None:
        """Remove any accumulated bytes not yet sent to the device."""

    # SerialBase calls these when settings change; a device without hardware
    # lines has nothing to update.
    def _reconfigure_port(self) -> None:
        """Apply changed settings to the open port (nothing to do here)."""

    def _update_rts_state(self) -> None:
        """Apply a new RTS state (nothing to do here)."""

    def _update_dtr_state(self) -> None:
        """Apply a new DTR state (nothing to do here)."""

    def _update_break_state(self) -> None:
        """Apply a new break condition (nothing to do here)."""


register()
