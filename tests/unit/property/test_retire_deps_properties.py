# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Properties of model_dependencies' editors and argument spec.

* The haproxy.cfg backend-section editor and the map-file editor: removing, then putting back what was recorded,
  gives the original text byte for byte, whatever the other lines, line endings and final newline.
* The argument spec (with the module's own checks) never raises on any input: it validates or reports problems.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from hypothesis import given, strategies as st

from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_deps as deps
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import guard_scalar_dicts

NAMES = st.sampled_from(('models', 'gpu-01', 'gpu-02', 'no_route', 'llama3', 'm1'))
EOL = st.sampled_from(('\n', '\r\n'))
FILLER = st.one_of(
    st.sampled_from(('', '    ', '# comment', '    balance leastconn', '    option httpchk GET /health',
                     '    server-template x 3 a:80', '    default-server inter 1s', '  # server gpu-01 old:1')),
    st.builds(lambda n, a: '    server %s %s:8000 check' % (n, a), NAMES, NAMES),
    st.text(st.characters(blacklist_characters='\n', blacklist_categories=('Cs',)), max_size=20))


@st.composite
def haproxy_cfg(draw):
    backend, server = draw(NAMES), draw(NAMES)
    parts = []
    for _round in range(draw(st.integers(0, 2))):
        parts.append(draw(st.sampled_from(('global', 'defaults', 'frontend f', 'backend other', 'listen l'))))
        parts.extend(draw(st.lists(FILLER, max_size=4)))
    parts.append(draw(st.sampled_from(('backend %s', 'backend  %s', 'listen %s'))) % backend)
    lines = draw(st.lists(FILLER, max_size=6))
    lines = [line for line in lines if line.split()[:2] != ['server', server]]
    lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(('    server %s 10.0.0.1:8000 check', 'server %s a:1',
                                                                         '\tserver %s b:2 weight 10 '))) % server)
    parts.extend(lines)
    for _round in range(draw(st.integers(0, 2))):
        parts.append(draw(st.sampled_from(('backend zz', 'cache c', 'ring r', 'peers p'))))
        parts.extend(draw(st.lists(FILLER, max_size=3)))
    eol = draw(EOL)
    return backend, server, eol.join(parts) + draw(st.sampled_from(('', eol)))


@given(haproxy_cfg())
def test_server_remove_then_put_back_is_byte_for_byte(case):
    backend, server, text = case
    if text.count('backend %s' % backend) + text.count('listen %s' % backend) != 1 or backend in ('zz', 'other', 'l'):
        return
    try:
        new, record = deps.remove_server(text, backend, server)
    except deps.DependencyError:
        return
    assert record is not None
    assert deps.insert_server(new, backend, server, record['line'], record['index']) == text
    # Putting back twice changes nothing more.
    assert deps.insert_server(text, backend, server, record['line'], record['index']) == text


MAP_LINE = st.one_of(st.sampled_from(('', '  ', '# llama3 old', '#x', 'llama3 models', 'llama3\tmodels_b', '  llama3 x',
                                      'llama30 y', 'mistral models', 'llama3')),
                     st.text(st.characters(blacklist_characters='\n', blacklist_categories=('Cs',)), max_size=15))


@given(st.lists(MAP_LINE, max_size=10), EOL, st.booleans(), st.sampled_from(('llama3', 'mistral', 'x')))
def test_map_remove_then_put_back_is_byte_for_byte(lines, eol, final_newline, key):
    text = eol.join(lines) + (eol if final_newline and lines else '')
    new, entries = deps.remove_map_entries(text, key)
    assert all(deps._map_key(e['line']) == key for e in entries)
    assert key not in [deps._map_key(line) for line in deps.split_text(new)]
    assert deps.insert_map_entries(new, entries, text == '' or text.endswith('\n')) == text


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=True),
                                 st.text(max_size=8)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.sampled_from(list(deps.KINDS) + [
                                                   'name', 'previous', 'backend', 'server', 'unit', 'path', 'key', 'url',
                                                   'timeout', 'haproxy', 'socket', 'method', 'undo', 'expect_status']),
                                                   inner, max_size=4)), max_leaves=12)


@given(st.dictionaries(st.sampled_from(('state', 'dependencies', 'x')), JSONISH, max_size=3))
def test_argument_spec_and_checks_never_raise(params):
    spec = deps.argument_spec()
    result = ArgumentSpecValidator(guard_scalar_dicts(spec, params)).validate(params)
    if not result.error_messages:
        problems = deps.check_params(result.validated_parameters)
        assert isinstance(problems, list)
