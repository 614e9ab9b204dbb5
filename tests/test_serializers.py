"""panoptes_cli.serializers: JSON and YAML with Quantities, times and comments."""

import json
from datetime import datetime

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time
from hypothesis import given, strategies as st

from panoptes_cli.error import InvalidDeserialization, InvalidSerialization
from panoptes_cli.serializers import (
    deserialize_all_objects, from_json, from_yaml, serialize_all_objects, serialize_object,
    to_json, to_yaml)

# Plain JSON data whose strings cannot be mistaken for a Quantity or a time.
plain_strings = st.text().filter(lambda s: not s[:1].isdigit() and s[:1] not in '+-.')
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | plain_strings,
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20)


@pytest.mark.slow
@given(plain_json)
def test_plain_data_round_trips_through_json(value):
    assert from_json(to_json(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
       st.sampled_from(['m', 'deg', 's', 'km', 'arcsec', 'm / s', 'min', 'K']))
@pytest.mark.slow
def test_quantities_round_trip(number, unit):
    quantity = number * u.Unit(unit)
    assert from_json(to_json({'q': quantity}))['q'] == quantity


@pytest.mark.parametrize('text', ['30', 'may', 'Mauna Loa', '12.5 C', '5 G', '1 2 3',
                                  '2020-01-01', 'PAN001', '42 degr', '3 apples'])
def test_strings_that_stay_strings(text):
    assert from_json(json.dumps({'v': text}))['v'] == text


@pytest.mark.parametrize('text, expected', [
    ('1999-12-31T23:59:59', datetime(1999, 12, 31, 23, 59, 59)),
    ('1999-12-31 23:59:59.500', datetime(1999, 12, 31, 23, 59, 59, 500000)),
    ('2000-01-01T02:00:00+02:00', datetime(2000, 1, 1, 0, 0, 0)),
    ('2000-01-01T00:00:00Z', datetime(2000, 1, 1)),
])
def test_iso_strings_become_utc_datetimes(text, expected):
    assert from_json(json.dumps({'v': text}))['v'] == expected


def test_times_serialize_as_iso():
    moment = datetime(2016, 9, 9, 8, 11, 52)
    assert to_json({'a': moment, 'b': Time(moment)}) == (
        '{"a": "2016-09-09T08:11:52.000", "b": "2016-09-09T08:11:52.000"}')


def test_lists_are_walked_both_ways():
    data = {'limits': [1 * u.deg, {'inner': [2 * u.m]}]}
    assert from_json(to_json(data)) == data
    assert deserialize_all_objects(['3 s', ['4 deg']]) == [3 * u.s, [4 * u.deg]]


def test_numpy_sets_and_exceptions_serialize():
    text = to_json({'scalar': np.int64(3), 'float': np.float32(0.5), 'array': np.eye(2),
                    'tags': {'b', 'a'}, 'error': RuntimeError('dome stuck')})
    assert json.loads(text) == {'scalar': 3, 'float': 0.5, 'array': [[1.0, 0.0], [0.0, 1.0]],
                                'tags': ['a', 'b'], 'error': 'RuntimeError: dome stuck'}


def test_unserializable_value_names_its_key():
    with pytest.raises(InvalidSerialization, match=r"'camera.devices.\[1\].driver'"):
        to_json({'camera': {'devices': [{'driver': 'ok'}, {'driver': object()}]}})


def test_to_json_appends_lines_to_a_file(tmp_path):
    target = tmp_path / 'records.json'
    to_json({'n': 1}, filename=target)
    to_json({'n': 2}, filename=target)
    assert target.read_text() == '{"n": 1}\n{"n": 2}\n'
    to_json({'n': 3}, filename=target, append=False)
    assert target.read_text() == '{"n": 3}\n'


def test_invalid_json_raises_with_reason():
    with pytest.raises(InvalidDeserialization, match='invalid JSON: Expecting'):
        from_json('{"a": ')


def test_yaml_keeps_comments_order_and_units(shared_data):
    text = (shared_data / 'testing.yaml').read_text()
    config = from_yaml(text)
    assert config['location']['elevation'] == 3400.0 * u.m
    dumped = to_yaml(config)
    assert [line.split('#')[1] for line in dumped.splitlines() if '#' in line] == \
           [line.split('#')[1] for line in text.splitlines() if '#' in line]
    assert list(from_yaml(dumped)) == list(config)


def test_yaml_does_not_change_the_callers_object():
    config = from_yaml('horizon: 30 deg  # degrees above the horizon\n')
    to_yaml(config)
    assert config['horizon'] == 30 * u.deg


def test_yaml_never_constructs_python_objects(tmp_path):
    marker = tmp_path / 'owned'
    loaded = from_yaml(f'danger: !!python/object/apply:os.system ["touch {marker}"]\n'
                       'name: !!python/name:os.system\n')
    assert not marker.exists()
    assert list(loaded['danger']) == [f'touch {marker}']
    assert not callable(loaded['name'])


def test_yaml_error_reports_line():
    with pytest.raises(InvalidDeserialization, match='line 3'):
        from_yaml('a: 1\nb: 2\nc: [unclosed\n')


def test_serialize_all_objects_leaves_input_alone():
    data = {'q': 1 * u.m}
    assert serialize_all_objects(data) == {'q': '1.0 m'}
    assert data == {'q': 1 * u.m}
    assert serialize_object('plain') == 'plain'
