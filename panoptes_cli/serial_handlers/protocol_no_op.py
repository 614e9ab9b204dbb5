"""The ``no_op://`` serial URL: a device that reads nothing and discards writes.

>>> import serial
>>> import panoptes_cli.serial_handlers
>>> device = serial.serial_for_url('no_op://')
>>> device.readline(), device.write(b'anything'), device.in_waiting
(b'', 0, 0)
"""

from panoptes_cli.serial_handlers import NoOpSerial

# serial.serial_for_url('no_op://') instantiates this module's ``Serial``.
Serial = NoOpSerial
