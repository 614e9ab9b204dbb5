"""The ``hooked://`` serial URL: a test decides which class handles it.

``serial.serial_for_url`` calls this module's :func:`serial_class_for_url`.
A test assigns its own function to ``serial_class_for_url`` (same API as
:func:`ExampleSerialClassForUrl`), or its own class to ``Serial``.

>>> import serial
>>> import panoptes_cli.serial_handlers
>>> from panoptes_cli.serial_handlers import NoOpSerial, protocol_hooked
>>> class Recorder(NoOpSerial):
...     def write(self, data):
...         self.written = bytes(data)
...         return len(data)
>>> protocol_hooked.Serial = Recorder
>>> device = serial.serial_for_url('hooked://anything')
>>> type(device).__name__, device.port, device.write(b'hi'), device.written
('Recorder', 'hooked://anything', 2, b'hi')
>>> protocol_hooked.Serial = NoOpSerial
"""

from panoptes_cli.serial_handlers import NoOpSerial


def ExampleSerialClassForUrl(url: str):  # noqa: N802 - the manual's name
    """Tell ``serial.serial_for_url`` what to make for a ``hooked://`` URL.

    pyserial expects a pair back: the URL (changed or not) and something it can
    call with ``None`` to get the port object; a class will do. pyserial then sets
    the new object's ``port`` to the URL.

    This one keeps the URL and names whatever class the module's ``Serial`` is
    when pyserial asks, so a test can swap ``Serial`` between calls.

    Returns:
        A tuple (url, factory).
    """
    return url, Serial


# A test assigns its own function here to take over "hooked://" URLs ...
serial_class_for_url = ExampleSerialClassForUrl
# ... or its own class here.
Serial = NoOpSerial
