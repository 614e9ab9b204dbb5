"""panoptes_cli.sun and ``panoptes time sun``."""

import json
import signal
import subprocess
import shutil
import time
from datetime import date, datetime, timedelta

import pytest

from panoptes_cli.error import IllegalValue, InvalidConfig
from panoptes_cli.sun import Site, event_name, night, parse_iso, site_from_config, wait_until

MAUNA_LOA = Site(19.54, -155.58, 3400.0)
CAPE_TOWN = Site(-33.9, 18.4, 0.0)

# An independent computation: astroplan 0.10.1 (its own rise/set search on
# astropy 5.3), with horizon -50' for sunset/sunrise as almanacs define them.
REFERENCE = {
    (MAUNA_LOA, date(2016, 9, 8)): {
        'sunset': '2016-09-09T04:30:28.811', 'civil_dusk': '2016-09-09T04:52:32',
        'astronomical_dusk': '2016-09-09T05:44:15.041',
        'astronomical_dawn': '2016-09-09T14:54:59.900', 'nautical_dawn': '2016-09-09T15:20:57.044',
        'civil_dawn': '2016-09-09T15:46:42.958', 'sunrise': '2016-09-09T16:08:47.500'},
    (CAPE_TOWN, date(2026, 3, 20)): {
        'sunset': '2026-03-20T16:57:40.970', 'civil_dusk': '2026-03-20T17:22:34.897',
        'nautical_dusk': '2026-03-20T17:51:38.297', 'astronomical_dusk': '2026-03-20T18:21:00.435',
        'astronomical_dawn': '2026-03-21T03:26:49.453', 'nautical_dawn': '2026-03-21T03:56:13.402',
        'civil_dawn': '2026-03-21T04:25:18.871', 'sunrise': '2026-03-21T04:50:14.910'},
}


@pytest.mark.slow
@pytest.mark.parametrize('site, day', list(REFERENCE))
def test_events_agree_with_an_independent_computation(site, day):
    tonight = night(site, day)
    for name, expected in REFERENCE[site, day].items():
        difference = parse_iso(tonight[name]) - datetime.fromisoformat(expected)
        assert abs(difference) < timedelta(seconds=60), (name, tonight[name], expected)


@pytest.mark.slow
def test_events_come_in_order_and_moon_is_a_fraction():
    tonight = night(CAPE_TOWN, date(2026, 3, 20))
    names = ['sunset', 'civil_dusk', 'nautical_dusk', 'astronomical_dusk', 'midnight',
             'astronomical_dawn', 'nautical_dawn', 'civil_dawn', 'sunrise']
    moments = [parse_iso(tonight[name]) for name in names]
    assert moments == sorted(moments)
    # New moon was on 2026-03-19: a thin crescent.
    assert 0 <= tonight['moon']['illumination'] < 0.1
    assert night(MAUNA_LOA, date(2016, 9, 8))['moon']['illumination'] == pytest.approx(0.4955, abs=0.01)


@pytest.mark.slow
def test_polar_summer_has_no_events():
    tonight = night(Site(78.2, 15.6), date(2016, 6, 20))
    assert tonight['sunset'] is None and tonight['astronomical_dusk'] is None
    assert tonight['midnight'] is not None


@pytest.mark.slow
def test_tonight_is_the_night_not_yet_over():
    # 02:00 local (solar) during the night: the current night.
    during = night(MAUNA_LOA, datetime(2016, 9, 9, 12, 22))
    assert during['night_of'] == '2016-09-08'
    # After sunrise: the coming night.
    morning = night(MAUNA_LOA, datetime(2016, 9, 9, 17, 0))
    assert morning['night_of'] == '2016-09-09'
    # Afternoon: the coming night.
    assert night(MAUNA_LOA, datetime(2016, 9, 9, 1, 0))['night_of'] == '2016-09-08'


def test_site_from_config_reads_quantities(shared_data):
    from panoptes_cli.config.helpers import load_config

    site = site_from_config(load_config(shared_data / 'testing.yaml'))
    assert (site.latitude, site.longitude, site.elevation) == (19.54, -155.58, 3400.0)
    assert site.name == 'Mauna Loa Observatory'
    with pytest.raises(InvalidConfig, match='location.latitude'):
        site_from_config({'location': {'longitude': 3}})


def test_bad_values_are_refused():
    with pytest.raises(IllegalValue, match='latitude 91'):
        Site(91, 0)
    with pytest.raises(IllegalValue, match='not an event'):
        event_name('noon')
    assert event_name('Nautical-Dawn') == 'nautical_dawn'


def test_wait_until_naps_and_rechecks_the_clock():
    clock = [datetime(2026, 1, 1, 0, 0, 0)]
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    target = datetime(2026, 1, 1, 0, 1, 10)
    assert wait_until(target, now=lambda: clock[0], sleep=sleep) == 70
    assert naps == [30, 30, 10]
    assert wait_until(target, now=lambda: clock[0], sleep=sleep) == 0


@pytest.mark.slow
def test_cli_prints_json_for_config_site(cli, shared_data, monkeypatch):
    monkeypatch.setenv('PANOPTES_CONFIG_FILE', str(shared_data / 'testing.yaml'))
    result = cli('time', 'sun', '--date', '2016-09-08')
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document['location']['name'] == 'Mauna Loa Observatory'
    assert document['astronomical_dusk'].startswith('2016-09-09T05:44')


def test_cli_usage_errors(cli):
    assert cli('time', 'sun', '--lat', '10').exit_code == 2
    result = cli('time', 'sun', '--lat', '1', '--lon', '2', '--wait-until', 'teatime')
    assert result.exit_code == 2 and 'not an event' in result.stderr
    assert cli('time', 'sun', '--lat', '1', '--lon', '2', '--date', 'tomorrow').exit_code == 2


def test_cli_missing_config_is_one_error_line(cli):
    result = cli('time', 'sun')
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: ') and result.stderr.count('\n') == 1


@pytest.mark.slow
def test_wait_for_a_past_event_returns_at_once(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2016-09-09 06:00:00')
    result = cli('time', 'sun', '--lat', '19.54', '--lon', '-155.58',
                 '--wait-until', 'astronomical-dusk')
    assert result.exit_code == 0
    assert json.loads(result.stdout)['night_of'] == '2016-09-08'


@pytest.mark.slow
def test_wait_for_an_event_the_sun_never_reaches_fails(cli, monkeypatch):
    monkeypatch.setenv('POCSTIME', '2016-06-20 12:00:00')
    result = cli('time', 'sun', '--lat', '78.2', '--lon', '15.6', '--wait-until', 'sunset')
    assert result.exit_code == 1 and 'does not reach' in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('sig, status', [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_the_wait(sig, status):
    process = subprocess.Popen(
        [shutil.which('panoptes'), 'time', 'sun', '--lat', '19.54', '--lon', '-155.58',
         '--wait-until', 'sunrise'],
        env={'PATH': '/usr/bin:/bin', 'POCSTIME': '2016-09-09 06:00:00', 'HOME': '/tmp'},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line = process.stderr.readline()
    assert first_line.startswith('waiting until sunrise at 2016-09-09T16:08'), first_line
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == status, err
    assert out == '' and 'Traceback' not in err
