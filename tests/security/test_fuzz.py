"""Generated hostile input (hypothesis) at the config server, ``db insert`` and the serializers.

Whatever comes in, nothing answers with a 500 or a traceback, and nothing that
was acknowledged is lost: a set the server answered 200 reads back, also after
a restart; a line ``db insert`` gave an id to is stored. Examples are bounded
so the run stays within seconds.
"""

import copy
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from panoptes_cli.config.helpers import assign, lookup
from panoptes_cli.error import InvalidDeserialization, InvalidSerialization, PanError
from panoptes_cli.serializers import from_json, from_yaml, to_json, to_yaml

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@st.composite
def nested(draw):
    """A value nested around the limit of 100 levels, or far past it."""
    depth = draw(st.sampled_from([1, 50, 99, 100, 101, 150, 300]))
    shape = draw(st.sampled_from(['list', 'dict', 'mixed']))
    value = draw(scalars)
    for level in range(depth):
        as_list = shape == 'list' or (shape == 'mixed' and level % 2)
        value = [value] if as_list else {'k': value}
    return value


values = st.one_of(json_values, nested())
# JSON text nested deeper than json.dumps itself could write.
deep_texts = st.sampled_from([3000, 100_000]).map(lambda depth: '[' * depth + ']' * depth)
names = st.sampled_from(['a', 'b', 'c', 'x1', 'name'])
good_keys = st.builds(lambda parts, index: 'fuzz.' + '.'.join(parts) + index,
                      st.lists(names, min_size=1, max_size=4), st.sampled_from(['', '', '[0]']))
keys = st.one_of(good_keys, good_keys, st.text(max_size=30),
                 st.integers(1, 5000).map(lambda count: '.'.join(['k'] * count)))


def comparable(value):
    """A value as our client reads it (Quantities, times), so a reload's normal forms compare equal."""
    return from_json(json.dumps(value))


@pytest.fixture(scope='module')
def fuzzed_server(tmp_path_factory):
    from .conftest import _server_starter

    start, servers = _server_starter(tmp_path_factory.mktemp('fuzzed-server'))
    yield start
    for server in servers:
        server.stop()


@pytest.mark.slow
def test_the_server_never_fails_and_never_loses_a_set(fuzzed_server):
    server = fuzzed_server()
    expected, acknowledged = {}, set()

    @FUZZ
    @given(st.lists(st.tuples(keys, values), min_size=1, max_size=3),
           st.one_of(st.binary(max_size=200), deep_texts.map(str.encode)))
    def attack(settings_to_set, garbage):
        body = json.dumps(dict(settings_to_set)) if len(settings_to_set) else '{}'
        status, answer = server.request('/set-config', body, {'Content-Type': 'application/json'})
        assert status in (200, 400, 413), answer
        if status == 200:
            for key, value in dict(settings_to_set).items():
                assert comparable(server.get(key)) == comparable(value)
                # What the config now holds (a later set may replace or extend an earlier one).
                assign(expected, key, copy.deepcopy(value))
                acknowledged.add(key)
        for path in ('/set-config', '/get-config', '/heartbeat', '/reset-config'):
            status, _ = server.request(path, garbage, {'Content-Type': 'application/json'})
            assert status in (200, 400, 413)

    attack()
    server.stop()
    restarted = fuzzed_server(config_file=server.config_file)
    lost = {key: lookup(expected, key) for key in acknowledged
            if comparable(restarted.get(key)) != comparable(lookup(expected, key))}
    assert acknowledged
    assert not lost


@pytest.mark.slow
@FUZZ
@given(st.lists(st.one_of(
    json_values.map(json.dumps), nested().map(json.dumps), deep_texts, st.text(max_size=40),
    st.dictionaries(st.sampled_from(['temp', 'wind', 'note']), json_values, max_size=3)
    .map(json.dumps)), max_size=20))
def test_db_insert_stores_every_line_it_acknowledges(isolated_env, lines):
    from panoptes_cli.database import PanDB
    from panoptes_cli.database.stream import insert_stream

    db = PanDB(db_type='memory', db_name='fuzz')
    # Each line alone: a line break inside generated text would split it.
    lines = [line.replace('\n', ' ').replace('\r', ' ') for line in lines]
    if lines and lines[0].strip() in ('{', '['):
        lines[0] = '{"first": 1}'
    data = ('\n'.join(lines) + '\n').encode('utf-8', errors='surrogatepass')
    stored = {}
    for batch in insert_stream(db, 'fuzz', io.BytesIO(data)):
        for result in batch:
            assert (result.id is None) != (result.error is None)
            if result.id is not None:
                stored.setdefault(result.line, []).append(result.id)
            else:
                assert result.error.msg.startswith(f'line {result.line}: ')
    for number, record_ids in stored.items():
        value = json.loads(lines[number - 1])
        # A JSON array is one record per element.
        expected = value if isinstance(value, list) else [value]
        assert [db.find('fuzz', record_id, parse=False)['data']
                for record_id in record_ids] == expected


@pytest.mark.slow
@FUZZ
@given(values)
def test_serializers_raise_only_their_own_errors(value):
    try:
        text = to_json(value)
        assert from_json(text) == from_json(json.dumps(value))
    except (InvalidSerialization, InvalidDeserialization):
        pass  # JSON writes what is nested too deep for the bounded reader: it refuses it
    try:
        text = to_yaml({'value': value})
    except InvalidSerialization:
        return
    try:
        from_yaml(text, parse=False)
    except InvalidDeserialization:
        pass


@FUZZ
@given(st.one_of(st.text(max_size=200), st.text(alphabet='[]{}&*:-, ab\n', max_size=400),
                 json_values.map(json.dumps), deep_texts))
@pytest.mark.slow
def test_yaml_and_json_text_parse_or_fail_cleanly(text):
    for parse in (from_yaml, from_json):
        try:
            parse(text)
        except PanError:
            pass
