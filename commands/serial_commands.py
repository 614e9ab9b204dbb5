"""``panoptes serial``: Serial devices: list ports, listen, simulate boards."""

import contextlib
import enum
import signal
import sys
from pathlib import Path

import typer

from panoptes_cli.commands import options, output

NAME = 'serial'
app = typer.Typer(help='Serial devices: list ports, listen, simulate boards.', no_args_is_help=True)


class Board(str, enum.Enum):
    telemetry = 'telemetry'
    camera = 'camera'
    json_object = 'json_object'


def _note(message: str) -> None:
    sys.stderr.write(f'{message}\n')
    sys.stderr.flush()


@app.command()
@options.records_output
def ports(
    links: bool = typer.Option(False, '--links',
                               help='Also list symbolic links such as /dev/serial/by-id/*.'),
    as_json: bool = typer.Option(False, '--json', help='Print JSON even on a terminal.'),
):
    """List the serial ports: device, description, hardware id, vid/pid, serial number.

    Prints a JSON list (vid and pid as 4-digit hex, as lsusb shows them); on
    a terminal, a table instead (unless --json).

    Examples:

    \b
      panoptes serial ports
      panoptes serial ports | jq -r '.[] | select(.vid == "2341") | .device'
    """
    from panoptes_cli.rs232 import list_serial_ports

    records = list_serial_ports(include_links=links)
    for_people = output.environment().stdout_isatty and not as_json
    if for_people and not records:
        _note('No serial ports found.')
        return
    if not for_people or output.current_format() is not output.Format.json:
        output.emit_json(records)
        return
    with output.output_mode(output.Format.table):
        # The columns people look for, in a width a terminal holds.
        output.emit_json([{
            'Device': record['device'], 'Description': record['description'],
            'VID:PID': f"{record['vid']}:{record['pid']}" if record['vid'] else '',
            'Serial number': record['serial_number'], 'Manufacturer': record['manufacturer'],
        } for record in records])


@app.command()
@options.records_output
def listen(
    port: str = typer.Argument(
        ..., metavar='PORT', help='A device (/dev/ttyACM0) or a PySerial URL (arduinosimulator://?board=telemetry).'),
    baudrate: int = typer.Option(9600, '--baudrate', '-b', min=1, help='The device\'s speed.'),
    count: int | None = options.LIMIT,
    raw: bool = typer.Option(False, '--raw',
                             help='Do not parse: one {"timestamp", "port", "line"} record per line.'),
    timeout: float | None = options.timeout(
        None, 'Fail (exit 1) when no data arrives for S seconds, also while reconnecting.'),
):
    """Stream a device's JSON readings as NDJSON, one line per reading, flushed.

    Each record is {"timestamp": <ISO-8601 UTC>, "port": PORT, "data": <the
    device's JSON object>}. Lines that are not JSON objects are reported on
    stderr and skipped (a partial first line, sent before we listened, is
    dropped quietly). When the device disappears (unplugged, reset) it is
    reported on stderr and reopened with growing delays (0.5 s up to 10 s)
    instead of exiting. A port that cannot be opened at the start is an error.
    Exit status: 0 after --limit readings, 1 on error or --timeout, 130 on Ctrl-C.

    Examples:

    \b
      panoptes serial listen /dev/ttyACM0 | panoptes db insert weather
      panoptes serial listen 'arduinosimulator://?board=telemetry' -n 1 | jq .data.humidity
      panoptes serial listen /dev/ttyUSB0 --baudrate 115200 --raw --timeout 10
    """
    from panoptes_cli import rs232

    events = rs232.listen(port, baudrate, parse=not raw, timeout=timeout)
    readings = 0
    with contextlib.closing(events):
        for event in events:
            if isinstance(event, rs232.Reading):
                output.emit_record(event.record(raw=raw))
                readings += 1
                if count is not None and readings >= count:
                    return
            elif isinstance(event, rs232.SkippedLine):
                shown = event.line if len(event.line) <= 80 else event.line[:77] + '...'
                _note(f'Warning: {port}: skipped a line: {event.reason}: {shown!r}')
            elif isinstance(event, rs232.Disconnected):
                _note(f'Warning: {port}: {event.reason}; reconnecting in {event.retry_in:g} s')
            elif isinstance(event, rs232.Reconnected):
                _note(f'{port}: reconnected')


@contextlib.contextmanager
def _sigterm_as_exit():
    """Let SIGTERM unwind (cleaning up the pty and link) and exit with status 143."""

    def stop(signum, frame):
        raise typer.Exit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def simulate(
    board: Board = typer.Option(Board.telemetry, '--board', help='Which board to simulate.'),
    pty: bool = typer.Option(False, '--pty',
                             help='Serve the board on a pseudo-terminal instead of stdout/stdin.'),
    link: Path | None = typer.Option(None, '--link',
                                     help='With --pty: also make this symbolic link to the pty.'),
    count: int | None = options.LIMIT,
):
    """Run a simulated PANOPTES Arduino board (telemetry_board.ino or camera_board.ino).

    The board sends a JSON report every 2 s at 9600 baud, with "millis" and
    "report_num", and acts on relay commands: lines "RELAY,ACTION" where RELAY
    is a relay's name or 0-based index and ACTION is on/1, off/0 or toggle.
    Telemetry relays: computer, fan, mount, cameras, weather, main (a relay
    turned off shows in the next report's "power", and its current drops to 0).
    Camera relays: camera_00, camera_01.

    Without --pty the reports go to stdout, one per line, and relay commands
    are read from stdin. With --pty the board is served on a pseudo-terminal,
    like a real board on a USB port: the first line on stdout is
    {"port": "/dev/pts/N", ...}, then it runs until interrupted (exit 130;
    SIGTERM 143), and any serial program can open the port.

    Examples:

    \b
      panoptes serial simulate --board camera --limit 3
      echo fan,off | panoptes serial simulate --limit 2
      panoptes serial simulate --pty --link /tmp/ttyTELEMETRY &
      panoptes serial listen /tmp/ttyTELEMETRY
    """
    from panoptes_cli.serial_handlers.arduino_board import BAUDRATE
    from panoptes_cli.serial_handlers.board_runner import SimulatedBoard
    from panoptes_cli.serial_handlers.pty_board import PtyBoard

    if link is not None and not pty:
        raise typer.BadParameter('--link needs --pty', param_hint='--link')
    with _sigterm_as_exit():
        if pty:
            with PtyBoard(board.value, link=link) as served:
                output.emit_record({
                    'port': served.port, 'board': board.value, 'baudrate': BAUDRATE,
                    'link': str(link) if link else None,
                    'relays': list(served.simulated.simulator.relays)})
                served.wait(count)
            return
        with SimulatedBoard(board.value) as simulated:
            stdin = getattr(sys.stdin, 'buffer', None)
            if stdin is not None:
                simulated.take_commands_from(stdin)
            for number, line in enumerate(simulated.lines(), start=1):
                output.emit_text(line)
                if count is not None and number >= count:
                    return
