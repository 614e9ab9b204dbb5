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
    """Implementation of serial_class_for_url called by serial.serial_for_url.

    Returns the url, possibly modified, and a factory function to be called to
    create an instance of a SerialBase sub-class (or at least behaves like it).
    You can return a class as that factory function, as calling a class creates
    an instance of that class.

    serial.serial_for_url will call that factory function with None as the
    port parameter (the first), and after creating the instance will assign
    the url to the port property of the instance.

    This example returns the url unchanged and this module's current
    ``Serial`` (looked up at call time, so assigning ``Serial`` works).

    Returns:
        A tuple (url, factory).
    """
    return url, Serial


# A test assigns its own function here to take over "hooked://" URLs ...
serial_class_for_url = ExampleSerialClassForUrl
# ... or its own class here.
Serial = NoOpSerial
