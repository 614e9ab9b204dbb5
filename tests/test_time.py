"""panoptes_cli.time and ``panoptes time now``."""

import json
import os
import threading
from datetime import datetime, timezone

import pytest

from panoptes_cli.error import IllegalValue, Timeout
from panoptes_cli.time import CountdownTimer, current_time, time_forms, utc_now, wait_for_events


def test_pocstime_advances_one_second_per_call(monkeypatch):
    monkeypatch.setenv('POCSTIME', '2016-09-09T08:11:52')
    assert current_time(flatten=True) == '20160909T081152'
    assert current_time(flatten=True) == '20160909T081153'
    assert utc_now() == datetime(2016, 9, 9, 8, 11, 54)
    assert os.environ['POCSTIME'] == '2016-09-09 08:11:55'


def test_pocstime_with_offset_is_converted_to_utc(monkeypatch):
    monkeypatch.setenv('POCSTIME', '2016-09-09T10:11:52+02:00')
    assert current_time(pretty=True) == '2016-09-09 08:11:52'


def test_bad_pocstime_names_variable_and_value(monkeypatch):
    monkeypatch.setenv('POCSTIME', 'yesterday')
    with pytest.raises(IllegalValue, match="POCSTIME='yesterday'"):
        current_time()


def test_time_forms_agree_with_astropy():
    from astropy.time import Time

    moment = datetime(2026, 11, 23, 19, 0, 0, 250000)
    forms = time_forms(moment)
    reference = Time(moment, scale='utc')
    assert forms['mjd'] == pytest.approx(reference.mjd, abs=1e-9)
    assert forms['unix'] == pytest.approx(reference.unix, abs=1e-6)
    assert forms['iso'] == reference.isot
    assert forms['flat'] == '20261123T190000'


def test_countdown_timer_accepts_quantities():
    from astropy import units as u

    timer = CountdownTimer(2 * u.minute)
    assert 119 < timer.time_left() <= 120
    assert timer.sleep(max_sleep=0.01) is True
    assert not timer.expired()


def test_countdown_timer_rejects_negative_duration():
    with pytest.raises(IllegalValue):
        CountdownTimer(-1)


def test_wait_for_single_event_with_quantity_timeout():
    from astropy import units as u

    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert wait_for_events(event, timeout=5 * u.s, sleep_delay=0.01 * u.s) is True


def test_wait_for_events_times_out():
    with pytest.raises(Timeout):
        wait_for_events([threading.Event()], timeout=0.05, sleep_delay=0.01)


@pytest.mark.parametrize('form, expected', [
    ('flat', '19991231T235959'),
    ('pretty', '1999-12-31 23:59:59'),
    ('iso', '1999-12-31T23:59:59.000'),
    ('unix', '946684799.0'),
    ('mjd', '51543.99998842592'),
])
def test_time_now_bare_forms(cli, form, expected):
    result = cli('time', 'now', '-f', form, env={'POCSTIME': '1999-12-31 23:59:59'})
    assert result.exit_code == 0
    assert result.stdout == f'{expected}\n'


@pytest.mark.slow
def test_time_now_json_document(run_panoptes):
    result = run_panoptes('time', 'now', env={'POCSTIME': '1999-12-31 23:59:59'}, check=True)
    assert json.loads(result.stdout) == {
        'iso': '1999-12-31T23:59:59.000', 'flat': '19991231T235959',
        'pretty': '1999-12-31 23:59:59', 'mjd': 51543.99998842592, 'unix': 946684799.0}


def test_time_now_without_pocstime_is_now(cli):
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    result = cli('time', 'now')
    stamp = datetime.fromisoformat(json.loads(result.stdout)['iso'])
    assert abs((stamp - before).total_seconds()) < 5
