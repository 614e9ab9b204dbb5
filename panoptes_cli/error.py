"""The panoptes_cli exception hierarchy.

Every error the core raises on purpose is a :class:`PanError`. The command
layer turns one into a single ``Error: ...`` line on stderr and exit status 1.

>>> from panoptes_cli.error import PanError, NotFound, SolveError
>>> issubclass(SolveError, NotFound) and issubclass(NotFound, PanError)
True
>>> str(PanError('Something broke'))
'PanError: Something broke'
>>> Timeout().msg
'Timeout waiting for event'
"""

import sys


class PanError(Exception):
    """Base class for Panoptes errors."""

    def __init__(self, msg=None, exit=False):
        super().__init__(msg)
        self.msg = msg
        if exit:
            self.exit_program(msg)

    def exit_program(self, msg=None):
        """Kills running program."""
        message = msg or self.msg or 'Something bad happened'
        print(f'TERMINATING: {message}', file=sys.stderr)
        sys.exit(1)

    def __str__(self):
        return f'{self.__class__.__name__}: {self.msg}' if self.msg else self.__class__.__name__


def _with_default_message(default):
    """Give a PanError subclass a default ``msg`` as the manual documents."""

    def __init__(self, msg=default, **kwargs):
        PanError.__init__(self, msg, **kwargs)

    return __init__


class InvalidSystemCommand(PanError):
    """Error for a system level command malfunction."""

    __init__ = _with_default_message('Problem running system command')


class Timeout(PanError):
    """Error called when an event times out."""

    __init__ = _with_default_message('Timeout waiting for event')


class BadConnection(PanError):
    """PanError raised when a connection is bad."""


class BadSerialConnection(PanError):
    """PanError raised when serial command is bad."""


class ArduinoDataError(PanError):
    """An Arduino board sent data that makes no sense."""


class IllegalValue(PanError, ValueError):
    """A value the code cannot work with, such as a setting a device model does not support."""


class CheckFailed(IllegalValue, AssertionError):
    """An IllegalValue where panoptes-utils 0.2.29 failed an ``assert``.

    Callers written for 0.2.29 catch ``AssertionError`` there; this keeps them working
    (and, unlike an ``assert``, it still checks under ``python -O``).
    """


class MissingFile(PanError, FileNotFoundError, AssertionError):
    """An input file that does not exist.

    A FileNotFoundError, and an AssertionError too: panoptes-utils 0.2.29 checked many
    inputs with ``assert os.path.exists(...)``, so its callers catch either.
    """


class InvalidCommand(PanError):
    """PanError raised if a system command does not run."""


class ProgramNotFound(InvalidSystemCommand, InvalidCommand):
    """An external program (solve-field, fpack, dcraw, ...) is not installed.

    Both of the classes 0.2.29 raised for a missing program, depending on which.
    """


class NotAFitsFile(PanError, OSError):
    """A file is missing, truncated, or not a FITS file at all.

    An OSError too, as astropy's (and so 0.2.29's) readers raised; the subclasses in
    ``panoptes_cli.images._fits_io`` keep the more precise builtin a 0.2.29 caller may catch.
    """


class UndecodableRaw(PanError):
    """A file that neither LibRaw nor dcraw can decode as a raw image."""


class InvalidConfig(PanError):
    """PanError raised if config file is invalid."""


class InvalidDeserialization(PanError):
    """Error for deserialization errors."""

    __init__ = _with_default_message('Problem deserializing')


class InvalidSerialization(PanError):
    """Error for serialization errors."""

    __init__ = _with_default_message('Problem Serializing')


class InvalidMountCommand(PanError):
    """PanError raised if attempting to send command that doesn't exist."""


class NoObservation(PanError):
    """Generic no Observation."""

    __init__ = _with_default_message('No valid observations found')


class NotFound(PanError):
    """Generic not found class."""


class InvalidObservation(NotFound):
    """An observation field that cannot be used."""


class CameraNotFound(NotFound):
    """Camera cannot be imported."""


class DomeNotFound(NotFound):
    """Dome device not found."""


class MountNotFound(NotFound):
    """Mount cannot be imported."""

    __init__ = _with_default_message('Mount Not Found')


class SolveError(NotFound):
    """A plate solve found no solution."""


class NotSupported(PanError, NotImplementedError):
    """Errors from trying to use hardware features not supported by a particular model."""


class DatabaseError(PanError):
    """A store could not be read or written (locked, corrupt, no space, ...)."""


class GoogleCloudError(PanError):
    """Errors related to google cloud."""


class TheSkyXError(PanError):
    """Errors from TheSkyX."""


class TheSkyXKeyError(TheSkyXError):
    """Errors from TheSkyX because a bad key was passed."""


class TheSkyXTimeout(TheSkyXError):
    """Errors from TheSkyX because it did not answer in time."""
