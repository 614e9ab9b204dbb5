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
    """A serial device with nothing behind it: reads give nothing, writes vanish.

    It fills in every method ``SerialBase`` leaves to a real port, so the other
    simulated devices here can start from it and override only what they need.
    """

    @property
    def in_waiting(self) -> int:
        """How many received bytes wait to be read: never any."""
        return 0

    def _check_open(self) -> None:
        """Raise PortNotOpenError unless the port is open (for reads and writes)."""
        if not self.is_open:
            raise serialutil.PortNotOpenError()

    def open(self) -> None:
        """Mark the port open; there is no device that could refuse."""
        self.is_open = True

    def close(self) -> None:
        """Mark the port closed."""
        self.is_open = False

    def read(self, size: int = 1) -> bytes:
        """Return no bytes, at once, whatever ``size`` asks for.

        Raises:
            PortNotOpenError: The port is closed.
        """
        self._check_open()
        return b''

    def write(self, data) -> int:
        """Drop ``data`` and report that no byte went out.

        Raises:
            PortNotOpenError: The port is closed.
        """
        self._check_open()
        return 0

    def reset_input_buffer(self) -> None:
        """Drop what was received and not read: nothing here."""

    def reset_output_buffer(self) -> None:
        """Drop what was written and not sent: nothing here."""

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
