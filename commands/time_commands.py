"""``panoptes time``: the observatory's clock, honouring POCSTIME."""

import enum

import typer

from panoptes_cli.commands import output

NAME = 'time'
app = typer.Typer(help='Observatory time in UTC (honours POCSTIME).', no_args_is_help=True)


class TimeFormat(str, enum.Enum):
    iso = 'iso'
    flat = 'flat'
    pretty = 'pretty'
    mjd = 'mjd'
    unix = 'unix'


@app.command()
def now(
    time_format: TimeFormat | None = typer.Option(
        None, '--format', '-f', help='Print only this form, as a bare value for shell scripts.'),
):
    """Print the current UTC time as JSON: iso, flat, pretty, mjd and unix forms.

    When POCSTIME is set (e.g. POCSTIME='1999-12-31 23:59:59') that time is used.

    Examples:

      panoptes time now

      mkdir "$(panoptes time now -f flat)"
    """
    from panoptes_cli.time import time_forms

    forms = time_forms()
    if time_format is None:
        output.emit_json(forms)
    else:
        output.emit_text(str(forms[time_format.value]))
