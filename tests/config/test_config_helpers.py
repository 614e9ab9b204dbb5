"""Config files: loading with local overrides, saving, dotted keys."""

import os
import re
import stat

import pytest
from astropy import units as u

from panoptes_cli.config import helpers
from panoptes_cli.config.helpers import (
    assign,
    load_config,
    local_config_path,
    lookup,
    parse_config_directories,
    save_config,
    top_name,
)
from panoptes_cli.error import InvalidConfig, InvalidSerialization


def write(path, text):
    path.write_text(text)
    return path


# --- load_config ------------------------------------------------------------------------

def test_load_testing_yaml_parses_quantities(config_file):
    config = load_config(config_file)
    assert config['name'] == 'Testing PANOPTES Unit'
    assert config['location']['horizon'] == 30 * u.deg
    assert config['location']['elevation'] == 3400 * u.m
    assert config['cameras']['devices'][1]['model'] == 'canon_gphoto2'
    raw = load_config(config_file, parse=False)
    assert raw['location']['horizon'] == '30 deg'


def test_local_file_is_deep_merged(config_file):
    write(config_file.with_name('testing_local.yaml'),
          'location:\n  horizon: 45 deg\ncameras:\n  primary: abcdef\nextra: 1\n')
    config = load_config(config_file)
    assert config['location']['horizon'] == 45 * u.deg
    # The rest of location is still there (the manual replaced the whole entry).
    assert config['location']['name'] == 'Mauna Loa Observatory'
    assert config['location']['latitude'] == 19.54 * u.deg
    assert config['cameras']['primary'] == 'abcdef'
    assert len(config['cameras']['devices']) == 2
    assert config['extra'] == 1
    assert load_config(config_file, load_local=False)['location']['horizon'] == 30 * u.deg


def test_lists_in_local_file_replace_the_default_list(config_file):
    write(config_file.with_name('testing_local.yaml'), 'cameras:\n  devices:\n    - model: zwo\n')
    assert load_config(config_file)['cameras']['devices'] == [{'model': 'zwo'}]


def test_local_name_comes_from_the_stem_not_the_directory(tmp_path, shared_data):
    directory = tmp_path / 'conf.d.v2'
    directory.mkdir()
    main = write(directory / 'pocs.yaml', (shared_data / 'testing.yaml').read_text())
    write(directory / 'pocs_local.yaml', 'name: Local Unit\n')
    assert local_config_path(main) == directory / 'pocs_local.yaml'
    assert load_config(main)['name'] == 'Local Unit'


def test_files_load_in_order_each_followed_by_its_local(tmp_path):
    first = write(tmp_path / 'first.yaml', 'a: 1\nb: 1\nc: 1\n')
    write(tmp_path / 'first_local.yaml', 'b: 2\nc: 2\n')
    second = write(tmp_path / 'second.yaml', 'c: 3\nd: 3\n')
    assert dict(load_config([first, second])) == {'a': 1, 'b': 2, 'c': 3, 'd': 3}
    assert dict(load_config([second, first])) == {'a': 1, 'b': 2, 'c': 2, 'd': 3}


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InvalidConfig, match=r'missing\.yaml: no such config file'):
        load_config([tmp_path / 'missing.yaml'], strict=True)


def test_api_skips_missing_and_invalid_files_with_a_warning_as_0_2_29(tmp_path, logged_warnings):
    write(tmp_path / 'pocs_local.yaml', 'name: Local Unit\n')
    write(tmp_path / 'broken.yaml', 'a: [1\n')
    write(tmp_path / 'other.yaml', 'b: 2\n')
    config = load_config([tmp_path / 'pocs.yaml', tmp_path / 'broken.yaml', tmp_path / 'other.yaml'])
    assert dict(config) == {'name': 'Local Unit', 'b': 2}
    assert len(logged_warnings) == 2
    assert 'pocs.yaml: no such config file' in logged_warnings[0]
    assert 'broken.yaml: invalid YAML' in logged_warnings[1]


def test_invalid_yaml_names_file_and_line(config_file):
    lines = config_file.read_text().splitlines()
    lines[20] = '  horizon: 30 deg: oops'
    write(config_file, '\n'.join(lines) + '\n')
    with pytest.raises(InvalidConfig) as info:
        load_config(config_file, strict=True)
    assert str(config_file) in info.value.msg
    assert 'invalid YAML at line 21, column 18: mapping values are not allowed here' in info.value.msg


def test_invalid_local_file_names_the_local_file(config_file):
    local = write(config_file.with_name('testing_local.yaml'), 'location:\n\thorizon: 45 deg\n')
    with pytest.raises(InvalidConfig, match=rf'{local}: invalid YAML at line 2'):
        load_config(config_file, strict=True)


def test_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path / 'dup.yaml', 'name: a\nname: b\n')
    with pytest.raises(InvalidConfig, match=r'dup\.yaml: invalid YAML at line 2'):
        load_config(path, strict=True)


@pytest.mark.parametrize('text, why', [
    ('- a\n- b\n', 'the top level must be a mapping of settings, not a CommentedSeq'),
    ('just words\n', 'the top level must be a mapping of settings, not a str'),
    ('', 'the file holds no settings'),
    ('# only a comment\n', 'the file holds no settings'),
])
def test_config_must_be_a_mapping(tmp_path, text, why):
    path = write(tmp_path / 'odd.yaml', text)
    with pytest.raises(InvalidConfig, match=why):
        load_config(path, strict=True)


def test_empty_local_file_is_fine(config_file):
    write(config_file.with_name('testing_local.yaml'), '# nothing changed yet\n')
    assert load_config(config_file)['name'] == 'Testing PANOPTES Unit'


def test_unreadable_files_are_invalid_config(tmp_path):
    binary = tmp_path / 'binary.yaml'
    binary.write_bytes(b'\xff\xfe\x00name')
    with pytest.raises(InvalidConfig, match='not a YAML text file'):
        load_config(binary, strict=True)
    with pytest.raises(InvalidConfig, match='cannot read'):
        load_config(tmp_path, strict=True)


def test_yaml_tags_never_run_code(tmp_path):
    marker = tmp_path / 'pwned'
    path = write(tmp_path / 'evil.yaml',
                 f'a: !!python/object/apply:os.system ["touch {marker}"]\n'
                 f'b: !!python/name:os.system\n'
                 f'c: !!python/object:os.system ls\n')
    config = load_config(path)
    assert not marker.exists()
    plain = helpers.plain_config(config)
    assert plain['c'] == 'ls' and plain['b'] == ''
    assert not callable(plain['b'])


def test_default_config_file_and_bundled_config(monkeypatch, config_file):
    monkeypatch.delenv('PANOPTES_CONFIG_FILE')
    bundled = helpers.default_config_file()
    assert helpers.is_bundled_config(bundled)
    config = load_config()
    assert config['pan_id'] == 'PAN000'
    assert config['cameras']['devices'][1]['model'] == 'canon_gphoto2'
    assert 'Values with units' in helpers.BUNDLED_CONFIG.read_text()
    monkeypatch.setenv('PANOPTES_CONFIG_FILE', str(config_file))
    assert helpers.default_config_file() == str(config_file)
    assert not helpers.is_bundled_config(config_file)


def test_unset_file_from_environment_is_an_error(tmp_path):
    # conftest points PANOPTES_CONFIG_FILE at a file that does not exist.
    with pytest.raises(InvalidConfig, match='no-config-file.yaml: no such config file'):
        load_config(strict=True)


# --- save_config ------------------------------------------------------------------------

def test_save_config_writes_the_local_file_with_comments(config_file):
    config = load_config(config_file)
    config['location']['horizon'] = 45 * u.deg
    assert save_config(config_file, config) is True
    local = config_file.with_name('testing_local.yaml')
    text = local.read_text()
    assert 'horizon: 45.0 deg # targets must be above this' in text
    assert '# pan_id: This is an identification number' in text
    assert load_config(config_file)['location']['horizon'] == 45 * u.deg
    # Nothing but the two config files is left in the directory.
    assert sorted(p.name for p in config_file.parent.glob('*.yaml*')) == [
        'testing.yaml', 'testing_local.yaml']
    assert not list(config_file.parent.glob('.*'))


def test_save_config_refuses_to_overwrite_when_asked(config_file):
    local = write(config_file.with_name('testing_local.yaml'), 'name: mine\n')
    with pytest.raises(FileExistsError):
        save_config(config_file, {'name': 'other'}, overwrite=False)
    assert local.read_text() == 'name: mine\n'
    save_config(local, {'name': 'other'})
    assert local.read_text() == 'name: other\n'


def test_save_config_keeps_permissions(config_file):
    local = write(config_file.with_name('testing_local.yaml'), 'name: mine\n')
    local.chmod(0o600)
    save_config(config_file, {'name': 'other'})
    assert stat.S_IMODE(local.stat().st_mode) == 0o600


def test_failed_save_leaves_the_old_file_and_no_temp_file(config_file):
    local = write(config_file.with_name('testing_local.yaml'), 'name: mine\n')
    with pytest.raises(InvalidSerialization):
        save_config(config_file, {'bad': object()})
    assert local.read_text() == 'name: mine\n'
    assert sorted(os.listdir(config_file.parent)) == ['pandir', 'testing.yaml',
                                                      'testing_local.yaml']


# --- parse_config_directories -----------------------------------------------------------

def test_parse_config_directories_with_existing_directories(tmp_path):
    (tmp_path / 'images').mkdir()
    dirs = {'base': str(tmp_path), 'images': 'images', 'data': 'data', 'abs': '/srv/x', 'n': 3}
    parsed = parse_config_directories(dirs, must_exist=True)
    assert parsed == {'base': str(tmp_path), 'images': str(tmp_path / 'images'),
                      'data': 'data', 'abs': '/srv/x', 'n': 3}
    assert dirs['images'] == 'images'
    assert parse_config_directories({'images': 'images'}) == {'images': 'images'}


# --- Dotted keys ------------------------------------------------------------------------

@pytest.mark.parametrize('key, value', [
    ('name', 'x'),
    ('cameras.devices[1].model', 'zwo'),
    ('grid[0][-1]', 3),
    ('odd-name with spaces.x', 1),
])
def test_keys_reach_names_and_list_items(key, value):
    config = {'name': 'x', 'cameras': {'devices': [{'model': 'canon'}, {'model': 'zwo'}]},
              'grid': [[1, 2, 3]], 'odd-name with spaces': {'x': 1}}
    assert top_name(key) in config
    assert lookup(config, key) == value
    assign(config, key, 'new')
    assert lookup(config, key) == 'new'


@pytest.mark.parametrize('key', ['.a', 'a.', 'a..b', '[0]', 'a[x]', 'a[1', 'a]', 'a[1]b'])
def test_malformed_keys_are_refused(key):
    config = {'a': {'b': [1]}}
    for call in (lambda: lookup(config, key), lambda: assign(config, key, 1),
                 lambda: top_name(key)):
        with pytest.raises(InvalidConfig, match='bad config key'):
            call()
    with pytest.raises(InvalidConfig, match='bad config key'):
        assign(config, '', 1)
    assert config == {'a': {'b': [1]}}


def test_keys_must_be_strings():
    with pytest.raises(InvalidConfig, match='not a int'):
        lookup({}, 5)
    with pytest.raises(InvalidConfig, match='not a int'):
        assign({}, 5, 1)


def test_lookup_missing_things_give_the_default():
    config = {'a': {'b': [1, {'c': None}]}, 'name': 'x'}
    assert lookup(config, None) is config
    assert lookup(config, 'a.b[1].c', 'dflt') is None
    config['a'][0] = 'an int key'
    for key in ('missing', 'a.b[2]', 'a.b[-3]', 'name.first', 'a[0]', 'a.b.c', 'a.b[1].c.d',
                'name[0]', 'a.b[1].c[0]'):
        assert lookup(config, key, 'dflt') == 'dflt', key


def test_assign_creates_parents_and_replaces_values():
    config = {'a': {'b': [1, {'c': 2}]}, 'empty': None, 'holes': [None], 'deep': {'x': None}}
    assign(config, 'holes[0].x', 1)
    assign(config, 'deep.x.y.z', 2)
    assert config['holes'] == [{'x': 1}] and config['deep'] == {'x': {'y': {'z': 2}}}
    del config['holes'], config['deep']
    assign(config, 'a.b[1].c', 3)
    assign(config, 'a.b[-2]', 'first')
    assign(config, 'new.deep.key', {'x': 1})
    assign(config, 'empty.child', True)
    assign(config, 'a', {'replaced': True})
    assert config == {'a': {'replaced': True}, 'empty': {'child': True},
                      'new': {'deep': {'key': {'x': 1}}}}


@pytest.mark.parametrize('key, message', [
    ('a.b[5]', 'list index 5 is out of range, a.b has 2 item(s)'),
    ('a.b[0].c', 'a.b[0] is a int, not a mapping'),
    ('a[0]', 'a is a dict, not a list'),
    ('name.first', 'name is a str, not a mapping'),
    ('missing[0].x', 'missing does not exist, so it has no list to index'),
    ('missing.list[0]', 'missing.list does not exist, so it has no list to index'),
    ('name[0]', 'name is a str, not a list'),
    ('a.b[0].c.d', 'a.b[0] is a int, not a mapping'),
])
def test_assign_refuses_and_changes_nothing(key, message):
    config = {'a': {'b': [1, 2]}, 'name': 'x'}
    with pytest.raises(InvalidConfig, match=re.escape(message)):
        assign(config, key, 9)
    assert config == {'a': {'b': [1, 2]}, 'name': 'x'}
