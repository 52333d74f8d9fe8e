# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module of plugins/modules, found at collection time (a new one is covered without a change here), driven
from its own argument spec and its own EXAMPLES, with hostile values mixed in.

Modules with an action plugin of the same name (shutdown_report) are left out: their module file is a doc stub.

Properties, in check mode and not: main() ends in exit_json or fail_json (no traceback); it does not wait past the
timeouts it was given (or their defaults); in check mode nothing that changes the host is run or sent and the
sandbox is left as it was.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import re

import pytest
import yaml

from hypothesis import given
from hypothesis import strategies as st

import ansible_collections.modelops.shutdown.plugins.modules as modules_package
from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts
from ansible_collections.modelops.shutdown.tests.unit.property.scenarios import SLACK_SECONDS, Machine, finite_seconds
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import garbage_text, hostile, tampered, timing

SANDBOX = '@SANDBOX@'
ACTION_DIR = os.path.join(list(modules_package.__path__)[0], '..', 'action')
MODULES = sorted(info.name for info in pkgutil.iter_modules(modules_package.__path__)
                 if not os.path.exists(os.path.join(ACTION_DIR, info.name + '.py')))
UNITS = ('model-server@llama.service', 'vllm', '-.mount', 'nope.service', 'a/b.service', '../../../x.service')
TIMING_WORDS = ('timeout', 'interval', 'period', 'wait', 'delay')
# What an option-less dict (host_shutdown's phases) may wait by its nested module's defaults.
NESTED_DEFAULT_SECONDS = 400.0


def load(name):
    return importlib.import_module(modules_package.__name__ + '.' + name)


def examples(module, name):
    """The options of each task of the module's EXAMPLES that calls it, with paths moved into the sandbox."""
    found = []
    try:
        tasks = yaml.safe_load(getattr(module, 'EXAMPLES', '') or '') or []
    except yaml.YAMLError:
        return found
    for task in tasks:
        if isinstance(task, dict):
            for key in ('modelops.shutdown.' + name, name):
                if isinstance(task.get(key), dict):
                    found.append(sandboxed_paths(templated(task[key])))
    return found


def templated(value):
    """Jinja expressions of an example replaced by a plain value."""
    if isinstance(value, str):
        return re.sub(r'\{\{.*?\}\}', '1764614400.0', value) if '{{' in value else value
    if isinstance(value, dict):
        return dict((k, templated(v)) for k, v in value.items())
    if isinstance(value, list):
        return [templated(v) for v in value]
    return value


def sandboxed_paths(value):
    """Absolute file paths of an example moved under the sandbox (an HAProxy socket is faked wherever it is)."""
    if isinstance(value, str):
        if value.startswith('/') and ' ' not in value and not value.endswith('.sock'):
            return SANDBOX + '/files' + value
        return value
    if isinstance(value, dict):
        return dict((k, sandboxed_paths(v)) for k, v in value.items())
    if isinstance(value, list):
        return [sandboxed_paths(v) for v in value]
    return value


PATHS = st.sampled_from((SANDBOX + '/files/flag', SANDBOX + '/files/tasks.jsonl', SANDBOX + '/files', SANDBOX + '/nope/x',
                         SANDBOX + '/files/a\x00b', SANDBOX + '/files/' + 'x' * 300, '/run/haproxy/admin.sock'))


def scalar(name, option):
    """A value for one option of type str/int/float/bool/path/raw, chosen by its type and name."""
    kind = option.get('type', 'str')
    if option.get('choices'):
        return st.one_of(st.sampled_from(list(option['choices'])), st.sampled_from(list(option['choices'])), hostile())
    if kind == 'path':
        return st.one_of(PATHS, PATHS, PATHS, hostile())
    if kind == 'float' or any(word in name for word in TIMING_WORDS):
        return timing(0, 3)
    if kind == 'int':
        if 'port' in name:
            return st.sampled_from((9999, 18080, 8000, 0, -1, 70000, 2 ** 64))
        return st.one_of(st.integers(-2, 100), hostile())
    if kind == 'bool':
        return st.one_of(st.booleans(), st.booleans(), st.sampled_from(('yes', 'no', 2, None)))
    if 'url' in name:
        return st.one_of(st.sampled_from(hosts.KNOWN_URLS), hostile())
    if 'unit' in name:
        return st.one_of(st.sampled_from(UNITS), hostile())
    if name in ('backend',):
        return st.sampled_from(('models', 'nope', 'a;b', ''))
    if name in ('server', 'host') or name.endswith('_id'):
        return st.sampled_from(('m1', 'm4', 'vllm-1', '127.0.0.1', 'gpu-01', '-x', 'a' * 64 + '.example'))
    return st.one_of(st.sampled_from(('m1', 'vllm', 'model-server@llama', '8000/tcp', 'public')), garbage_text(20), hostile())


def value_for(name, option, depth=0):
    kind = option.get('type', 'str')
    if kind == 'dict' and option.get('options') and depth < 3:
        return options_for(option['options'], depth + 1)
    if kind == 'dict':
        return st.one_of(st.dictionaries(st.sampled_from(('units', 'timeout', 'url', 'port', 'paths', 'x')), hostile(), max_size=3),
                         hostile())
    if kind == 'list':
        element = dict(option, type=option.get('elements', 'str'))
        element.pop('default', None)
        element.pop('elements', None)
        return st.lists(value_for(name, element, depth + 1), max_size=3)
    return scalar(name, option)


@st.composite
def options_for(draw, spec, depth=0):
    args = {}
    for name, option in spec.items():
        if option.get('required') or draw(st.booleans()):
            args[name] = draw(value_for(name, option, depth))
    return args


def timing_total(spec, args):
    """The seconds the options allow the module to wait: every timing-like option given (or its default), through
    nested options; an option-less dict given counts C(NESTED_DEFAULT_SECONDS)."""
    total = 0.0
    for name, option in (spec or {}).items():
        value = args.get(name, option.get('default')) if isinstance(args, dict) else option.get('default')
        if option.get('options') and isinstance(value, dict):
            total += timing_total(option['options'], value)
        elif option.get('options') and option.get('type') == 'list' and isinstance(value, list):
            total += sum(timing_total(option['options'], item) for item in value)
        elif option.get('type') in ('dict', 'raw') and value is not None:
            total += NESTED_DEFAULT_SECONDS + nested_timings(value)
        elif any(word in name for word in TIMING_WORDS):
            total += finite_seconds(value) or 0.0
    return total


def nested_timings(value):
    if isinstance(value, dict):
        return sum((finite_seconds(v) or 0.0) if any(w in str(k) for w in TIMING_WORDS) else nested_timings(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(nested_timings(v) for v in value)
    return 0.0


@functools.lru_cache(maxsize=None)
def described(name):
    """The module, its argument spec and its EXAMPLES options (read once)."""
    module = load(name)
    spec, kwargs = fakes.module_spec(module)
    return module, spec, examples(module, name)


@st.composite
def module_case(draw, name):
    module, spec, seeds = described(name)
    if seeds and draw(st.booleans()):
        args = draw(st.sampled_from(seeds))
    else:
        args = draw(options_for(spec))
    return module, spec, draw(tampered(args))


@st.composite
def host_world(draw):
    """A host with a few units, an open firewall port, idle or busy GPUs, metrics, and faults now and then."""
    units = {unit: draw(st.sampled_from(('running', 'running', 'inactive', 'failed'))) for unit in UNITS[:2]}
    units['vllm.service'] = draw(st.sampled_from(('running', 'inactive')))
    return dict(
        units=units,
        endings=draw(st.lists(st.sampled_from(tuple(hosts.STOP_ENDINGS)), min_size=1, max_size=3)),
        systemd_faults=draw(st.lists(st.one_of(st.none(), st.none(), st.tuples(st.just('rc'), st.sampled_from((1, 4))),
                                               st.tuples(st.just('junk'), garbage_text())), max_size=3)),
        policy_faults=draw(st.lists(st.one_of(st.none(), st.none(), st.tuples(st.just('rc'), st.sampled_from((1, 2))),
                                              st.tuples(st.just('junk'), garbage_text())), max_size=3)),
        apps=draw(st.sampled_from(((0, '', 'zero'), (0, hosts.APPS_LOAD, 'busy'), (9, 'NVIDIA-SMI has failed', 'error')))),
        http_faults=draw(st.lists(st.one_of(st.none(), st.none(), st.sampled_from(('timeout', 'refused')),
                                            st.tuples(st.just('status'), st.sampled_from((500, 403)))), max_size=3)),
        haproxy_faults=draw(st.lists(st.one_of(st.none(), st.none(), st.tuples(st.sampled_from(('cut', 'reset')), st.floats(0, 1)),
                                               st.just('denied')), max_size=3)),
        missing=draw(st.lists(st.sampled_from(('timeout', 'firewall-cmd', 'nvidia-smi', 'systemctl')), max_size=2, unique=True)),
    )


def machine_for(sandbox, plan):
    sandbox.write('files/tasks.jsonl', b'{"event":"started","id":"a","ts":1714564800.25}\n{"event":"started","id":"b","ts":1714564801}\n'
                                       b'{"event":"completed","id":"a","ts":1714564802}\n\xff\n')
    sandbox.write('files/flag', 'reason: test\n')
    sandbox.write('files/dropin.conf', '[Service]\nTimeoutStopSec=5\n')
    return Machine(
        sandbox,
        systemd=hosts.FakeSystemd(plan['units'], endings=plan['endings'], faults=plan['systemd_faults'],
                                  dropin_dir=sandbox.path('run', 'systemd', 'system')),
        policy=hosts.FakePolicyTools(firewalld={('public', False): {'8000/tcp'}, ('public', True): {'8000/tcp'}},
                                     ufw={'8000/tcp'}, selinux={'mode': 'Enforcing', 'booleans': {'httpd_can_network_connect': True}},
                                     faults=plan['policy_faults']),
        gpu=hosts.FakeGpuTools(gpu=[(0, hosts.gpu_rows([(0, hosts.ZERO_UUID, 'NVIDIA H100', 59, 81559)]), 59)], apps=[plan['apps']]),
        http=hosts.FakeHttp(metrics_bodies=[('vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n', 'zero')],
                            faults=plan['http_faults']),
        haproxy=hosts.FakeHAProxy(faults=plan['haproxy_faults']),
        missing=plan['missing'])


@pytest.mark.parametrize('name', MODULES)
@given(data=st.data(), check_mode=st.booleans())
def test_every_module_ends_cleanly_waits_no_longer_than_asked_and_respects_check_mode(name, data, check_mode):
    """Every module: exit_json/fail_json only, whatever the options; sleeps no longer than the timeouts it was given
    (or defaults to) allow; in check mode runs and sends nothing that changes the host and leaves the sandbox alone."""
    module, spec, args = data.draw(module_case(name), label='options')
    plan = data.draw(host_world(), label='host')
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, SANDBOX, sandbox.root)
        machine = machine_for(sandbox, plan)
        allowed = 2 * timing_total(spec, args) * (1 + len(UNITS)) + SLACK_SECONDS
        machine.run(module, args, check_mode=check_mode, allowed_seconds=allowed)


def structured_paths(spec, prefix=()):
    """Paths to the dict and list options of C(spec), nested options included."""
    found = []
    for name, option in spec.items():
        if option.get('type') in ('dict', 'list'):
            found.append(prefix + (name,))
        if option.get('type') == 'dict' and option.get('options'):
            found.extend(structured_paths(option['options'], prefix + (name,)))
    return found


def minimal_options(spec):
    """The required options of C(spec), each with a plain value of its type (nested required ones too)."""
    plain = {'str': 'm1', 'path': SANDBOX + '/files/flag', 'int': 1, 'float': 1.0, 'bool': True, 'raw': 'x', 'list': [], 'dict': {}}
    args = {}
    for name, option in spec.items():
        if option.get('required'):
            if option.get('choices'):
                args[name] = list(option['choices'])[0]
            elif option.get('type') == 'dict' and option.get('options'):
                args[name] = minimal_options(option['options'])
            else:
                args[name] = plain.get(option.get('type', 'str'), 'x')
    return args


WRONG_TYPES = (True, False, 0, 5, -1, 1.5, [1], ['a'], [None], [[]], 'x', '', {'a': 1}, [{'a': 1}])


@pytest.mark.parametrize('name', MODULES)
@given(data=st.data(), check_mode=st.booleans())
def test_every_module_refuses_wrong_types_for_structured_options(name, data, check_mode):
    """Every module: a dict or list option (nested ones included) given a bool, a number, a list of the wrong
    elements or a string ends in fail_json (or exit_json), never in a traceback from the argument checks
    (ansible-core 2.19 raises TypeError for a dict option with suboptions given a non-dict)."""
    module, spec, seeds = described(name)
    paths = structured_paths(spec)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths), label='option')
    args = fakes.substitute(data.draw(st.sampled_from(seeds)) if seeds and data.draw(st.booleans()) else minimal_options(spec), SANDBOX, '/nonexistent')
    node = args
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = data.draw(st.sampled_from(WRONG_TYPES), label='value')
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, '/nonexistent', sandbox.root)
        machine = machine_for(sandbox, data.draw(host_world(), label='host'))
        machine.run(module, args, check_mode=check_mode, allowed_seconds=None)
