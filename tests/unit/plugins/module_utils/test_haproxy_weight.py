# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The weight parts of the HAProxy client: `get weight` parsing and the static-algorithm rule.

Answers are the real HAProxy 2.6.12 captures of tests/unit/fixtures/haproxy_weight_answers_v2.6.12.json
(source in SOURCES.md).
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError, parse_weight, weight_dynamics
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy_checks import backend_balancing

FIXTURE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'haproxy_weight_answers_v2.6.12.json')
with open(FIXTURE) as handle:
    ANSWERS = json.load(handle)


@pytest.mark.parametrize('command, expected', [
    ('get weight dyn/s1', (10, 10)),
    ('get weight dyn/s2', (1, 1)),
    ('get weight dyn/s1 (after set weight 7)', (7, 10)),
    ('get weight st/s1 (after set weight 0)', (0, 10)),
])
def test_parse_weight_real_answers(command, expected):
    assert parse_weight(ANSWERS[command]) == expected


@pytest.mark.parametrize('command', ['get weight dyn/nope', 'get weight nope/s1', 'set weight st/s1 5'])
def test_parse_weight_refuses_other_answers_quoting_them(command):
    with pytest.raises(HAProxyError, match='expected "get weight"') as err:
        parse_weight(ANSWERS[command])
    assert ANSWERS[command].strip()[:20] in str(err.value)


@pytest.mark.parametrize('text', ['', '\n', '7\n\n', '7 (initial 10\n\n', 'x (initial 10)\n\n', '7 (initial 10)\n8 (initial 10)\n\n'])
def test_parse_weight_refuses_garbled_shapes(text):
    with pytest.raises(HAProxyError):
        parse_weight(text)


CONFIG = '''
global
    stats socket /run/haproxy/admin.sock mode 660 level admin
defaults
    mode http
    balance source          # map-based hash: static
backend by_source
    server m1 10.0.0.1:8000
backend consistent
    hash-type consistent
    server m1 10.0.0.1:8000
listen rr
    bind :80
    balance static-rr
defaults dyn
    balance leastconn
backend lc
    server m1 10.0.0.1:8000
backend hdr from dyn
    balance hdr(host)
'''


def test_backend_balancing_reads_sections_and_defaults():
    found = backend_balancing(CONFIG)
    assert found['by_source'] == {'balance': 'source', 'hash_type': None}
    assert found['consistent'] == {'balance': 'source', 'hash_type': 'consistent'}
    assert found['rr']['balance'] == 'static-rr'
    assert found['lc']['balance'] == 'leastconn'
    assert found['hdr']['balance'] == 'hdr'


def test_weight_dynamics_follows_the_captured_haproxy_behaviour():
    """Each backend of the capture: `set weight <b>/s1 2` was refused exactly where weight_dynamics says static."""
    accepted = ANSWERS['set weight <backend>/s1 2 per backend']
    algos = dict((key.split(' ', 1)[0], value) for key, value in ANSWERS['show stat algo column of BACKEND rows'].items())
    config = {'dyn': {'balance': 'roundrobin'}, 'st': {'balance': 'static-rr'}, 'src': {'balance': 'source'},
              'srcc': {'balance': 'source', 'hash_type': 'consistent'}, 'b_uri': {'balance': 'uri'},
              'b_hdr': {'balance': 'hdr'}, 'b_rand': {'balance': 'random'}, 'b_first': {'balance': 'first'},
              'b_lc': {'balance': 'leastconn'}, 'b_hash': {'balance': 'hash'}, 'b_rdp': {'balance': 'rdp-cookie'},
              'b_urlp': {'balance': 'url_param'}, 'b_none': {}}
    for backend, algo in algos.items():
        dynamic, why = weight_dynamics(backend, algo, config)
        assert dynamic is (accepted[backend] == '\n'), (backend, why)


def test_weight_dynamics_unknown_without_config_for_hash_algorithms():
    dynamic, why = weight_dynamics('models', 'source', None)
    assert dynamic is None and 'hash-type consistent' in why
    assert weight_dynamics('models', 'roundrobin', None)[0] is True
    assert weight_dynamics('models', None, None)[0] is None
    assert weight_dynamics('models', 'maglev', {})[0] is None
