"""``panoptes time``: the observatory's clock, honouring POCSTIME."""

import enum

import typer

from panoptes_cli.commands import options, output

NAME = 'time'
app = typer.Typer(help='Observatory time in UTC (honours POCSTIME).', no_args_is_help=True)


class TimeFormat(str, enum.Enum):
    iso = 'iso'
    flat = 'flat'
    pretty = 'pretty'
    mjd = 'mjd'
    unix = 'unix'


@app.command()
@options.raw_output
@options.records_output
def now(
    time_format: TimeFormat | None = typer.Option(
        None, '--format', '-f', help='Print only this form, as a bare value for shell scripts.'),
):
    """Print the current UTC time as JSON: iso, flat, pretty, mjd and unix forms.

    When POCSTIME is set (e.g. POCSTIME='1999-12-31 23:59:59') that time is used.

    Examples:

    \b
      panoptes time now
      mkdir "$(panoptes time now -f flat)"
    """
    from panoptes_cli.time import time_forms

    forms = time_forms()
    if time_format is None:
        output.emit_json(forms)
    else:
        output.emit_text(str(forms[time_format.value]))


SUN_HELP = """Print tonight's sunset, twilights, sunrise and the Moon's illumination as JSON.

The site is the config's location (PANOPTES_CONFIG_FILE, else the bundled
config) unless --lat and --lon are given. "Tonight" is the night not yet
over: after sunrise it is the coming night. Times are UTC, ISO 8601 with a
trailing Z; an event the Sun does not reach tonight is null.

Sunset and sunrise put the Sun's upper limb on a sea-level horizon with the
standard 34' of refraction; civil, nautical and astronomical twilight start
and end with the Sun's centre 6, 12 and 18 degrees below the horizon. The
Moon's illumination (0 new, 1 full) is at local solar midnight.

Accuracy: computed offline with astropy (no IERS or site downloads; its
bundled Earth-orientation tables, zero corrections beyond them). Times are
good to about a minute: real refraction varies more than that.

--wait-until EVENT sleeps until that event tonight, then prints the JSON; an
event already past returns at once. Ctrl-C or SIGTERM stops the wait with
status 130, so a following '&&' does not run. Events: sunset, civil-dusk,
nautical-dusk, astronomical-dusk, astronomical-dawn, nautical-dawn,
civil-dawn, sunrise. An event the Sun never reaches tonight is an error.

Examples:

\b
  panoptes time sun
  panoptes time sun --lat 19.54 --lon -155.58 --elev 3400 --date 2016-09-08
  panoptes time sun --wait-until astronomical-dusk && start-observing
"""


@app.command(help=SUN_HELP)
@options.records_output
def sun(
    lat: float | None = typer.Option(None, '--lat', min=-90, max=90,
                                     help='Latitude in degrees north (with --lon).'),
    lon: float | None = typer.Option(None, '--lon', min=-180, max=360,
                                     help='Longitude in degrees east (with --lat).'),
    elev: float = typer.Option(0.0, '--elev', help='Elevation in metres (with --lat/--lon).'),
    night_of: str | None = typer.Option(
        None, '--date', metavar='YYYY-MM-DD', help='The night starting on this local date.'),
    wait_until: str | None = typer.Option(
        None, '--wait-until', metavar='EVENT', help='Sleep until this event tonight first.'),
):
    import datetime as _datetime

    from panoptes_cli import sun as core

    if (lat is None) != (lon is None):
        raise typer.BadParameter('give both --lat and --lon, or neither', param_hint='--lat/--lon')
    event = None
    if wait_until is not None:
        try:
            event = core.event_name(wait_until)
        except ValueError as exc:
            raise typer.BadParameter(str(exc.msg), param_hint='--wait-until') from None
    when = None
    if night_of is not None:
        try:
            when = _datetime.date.fromisoformat(night_of)
        except ValueError:
            raise typer.BadParameter(f'{night_of!r} is not a date like 2026-11-29',
                                     param_hint='--date') from None
    site = core.Site(lat, lon, elev) if lat is not None else core.site_from_config()
    tonight = core.night(site, when)
    if event is not None:
        if tonight[event] is None:
            raise core.NoSuchEvent(f'{wait_until}: the Sun does not reach it at this site '
                                   f'on the night of {tonight["night_of"]}')
        target = core.parse_iso(tonight[event])
        output.note(f'waiting until {event.replace("_", "-")} at {tonight[event]}')
        core.wait_until(target)
    output.emit_json(tonight)
