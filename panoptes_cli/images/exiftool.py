"""One long-running exiftool per thread: EXIF for many files without a Perl start-up each.

Starting exiftool (Perl and its tag tables) costs about 0.1 s of CPU, more
than reading a CR2's tags. :func:`kept_exiftool` gives the calling thread
its own ``exiftool -stay_open True -@ -`` (exiftool's documented batch mode),
started the first time EXIF is asked for and reused after that. A request
is its arguments, one a line, ended by ``-executeN``; the answer is what
exiftool writes on stdout up to ``{readyN}``, and on stderr up to the
``-echo4`` line that carries the command's exit status. So each answer is the
one ``exiftool ARGS...`` run on its own would give.

Lifetime: exiftool keeps polling its argument pipe after the end of input,
so it is tied to the thread that started it instead: the kernel kills it
when that thread ends, normally or by a ``kill -9`` of its process
(``PR_SET_PDEATHSIG``, on Linux). It runs in a process group of its own, so a Ctrl-C
at the terminal, which a watch's workers ignore to finish their frames,
does not stop it halfway either. One that died, or did not answer in time
(it is then killed), is replaced at the next request.

>>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'cr2'
>>> tool = kept_exiftool()
>>> out, err, status = tool.ask(['-j', os.fspath(SHARED / 'synthetic.cr2')])
>>> json.loads(out)[0]['ISO'], err, status
(100, b'', 0)
>>> tool is kept_exiftool()
True
"""

from __future__ import annotations

import contextlib
import json  # noqa: F401 - used by the doctest
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path  # noqa: F401 - used by the doctest

from panoptes_cli import programs
from panoptes_cli.error import Timeout


def _die_with_parent(parent: int):
    """The function run in the child before exec: SIGKILL it when its parent thread ends.

    None where the kernel has no parent-death signal (not Linux).
    """
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def in_child():
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent ended before the line above
            os._exit(1)

    return in_child


def _argument_line(argument: str) -> bytes:
    r"""One argument as an argument-file line, whatever characters it holds.

    exiftool drops lines starting with ``#`` and leading white space, and a
    line cannot hold a newline; a ``#[CSTR]`` line is read with C escapes.

    >>> _argument_line('-j'), _argument_line('#1.cr2'), _argument_line('a\nb')
    (b'-j\n', b'#[CSTR]#1.cr2\n', b'#[CSTR]a\\nb\n')
    """
    if argument[:1] == '#' or argument[:1].isspace() or '\n' in argument or '\r' in argument:
        escaped = (argument.replace('\\', '\\\\').replace('\n', '\\n').replace('\r', '\\r')
                   .replace('\t', '\\t'))
        argument = f'#[CSTR]{escaped}'
    return os.fsencode(argument) + b'\n'


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except FileNotFoundError:  # removed while we were in it
        return None


class KeptExifTool:
    """One ``exiftool -stay_open True -@ -``, asked one command at a time."""

    def __init__(self, program: str = 'exiftool'):
        self.program = program
        self.process: programs.Process | None = None
        self._number = 0
        self._waiting: int | None = None
        self._directory: str | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self) -> None:
        self.close()
        self._directory = _working_directory()
        self.process = programs.Process(
            [programs.find_program(self.program), '-stay_open', 'True', '-@', '-'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            process_group=0, preexec_fn=_die_with_parent(os.getpid()))
        for stream in (self.process.stdout, self.process.stderr):
            os.set_blocking(stream.fileno(), False)

    @property
    def waiting(self) -> int | None:
        """The number of the command whose answer :meth:`receive` would return, if any."""
        return self._waiting

    def send(self, arguments: Sequence[str]) -> int:
        """Send one command (``exiftool ARGUMENTS...``); :meth:`receive` gets its answer.

        Returns the command's number. An answer not collected before the next
        command is dropped.
        """
        if self._waiting is not None:
            # An answer nobody collected (a cancelled read): drop it to stay in step.
            with contextlib.suppress(Timeout, OSError):
                self.receive(timeout=10)
        for attempt in (1, 2):
            if not self.alive or self._directory != _working_directory():
                # Relative names are exiftool's to resolve, from its own working directory.
                self._start()
            self._number += 1
            request = b''.join(_argument_line(argument) for argument in arguments)
            request += _argument_line('-echo4') + _argument_line(
                f'{{ready{self._number} ${{status}}}}') + _argument_line(
                f'-execute{self._number}')
            try:
                self.process.stdin.write(request)
                self.process.stdin.flush()
            except BrokenPipeError:
                if attempt == 2:
                    raise
                continue  # it died since the last command: start another
            self._waiting = self._number
            return self._number

    def receive(self, timeout: float | None = 60) -> tuple[bytes, bytes, int]:
        """Return the answer to the command sent: (stdout, stderr, exit status).

        Raises:
            Timeout: No answer within ``timeout`` seconds (this exiftool is then killed).
            OSError: exiftool ended before answering (the next command starts another).
        """
        number, self._waiting = self._waiting, None
        if number is None:
            raise RuntimeError('receive() without a command sent')
        out_end = f'{{ready{number}}}\n'.encode()
        err_end = re.compile(rb'(?:^|\n)\{ready%d (-?\d+)\}\n$' % number)
        out, err = bytearray(), bytearray()
        status = None
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ, out)
            selector.register(self.process.stderr, selectors.EVENT_READ, err)
            while not (out.endswith(out_end) and status is not None):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.close()
                    raise Timeout(f'exiftool took more than {timeout} s')
                for key, _ in selector.select(left):
                    try:
                        chunk = os.read(key.fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        self.close()
                        raise OSError(f'exiftool ended while answering: '
                                      f'{programs.failure_message(bytes(err), None)}')
                    key.data.extend(chunk)
                    if key.data is err:
                        match = err_end.search(err)
                        if match:
                            status = int(match.group(1))
                            del err[match.start():]
        return bytes(out[:-len(out_end)]), bytes(err), status

    def ask(self, arguments: Sequence[str],
            timeout: float | None = 60) -> tuple[bytes, bytes, int]:
        """Run one command and return its (stdout, stderr, exit status)."""
        self.send(arguments)
        return self.receive(timeout)

    def close(self) -> None:
        """End this exiftool, if running (a new one starts at the next command)."""
        process, self.process, self._waiting = self.process, None, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        for stream in (process.stdin, process.stdout, process.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        process.wait()


_local = threading.local()


def kept_exiftool(program: str = 'exiftool') -> KeptExifTool:
    """Return this thread's long-running exiftool (started at its first command)."""
    tools = getattr(_local, 'tools', None)
    if tools is None or getattr(_local, 'pid', None) != os.getpid():
        # None yet in this thread, or inherited through fork(): the parent's, not ours.
        tools = _local.tools = {}
        _local.pid = os.getpid()
    tool = tools.get(program)
    if tool is None:
        tool = tools[program] = KeptExifTool(program)
    return tool


def _forget_after_fork() -> None:
    """In a forked child, drop the parent's pipes (without touching the parent's exiftool)."""
    for tool in (getattr(_local, 'tools', None) or {}).values():
        process, tool.process = tool.process, None
        if process is not None:
            for stream in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
            process.returncode = 0  # not ours to wait for
    _local.tools = None


os.register_at_fork(after_in_child=_forget_after_fork)
