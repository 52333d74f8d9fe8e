# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retirement policies evaluated over the Prometheus HTTP API, and the eligibility report that freezes the evidence.

Private to this collection; the logic of the C(retirement_eligibility) module.

* Policies and models are validated with C(_spec.validate), so every error names its path
  (C(policies[1].conditions[0].compare: ...)).
* "No data" is never "zero": a target that is down or not scraped, a query that fails, an empty result or a
  NaN/Inf value makes a condition C(inconclusive), unless the condition says what no data means.
* The report carries every rendered query, its time(s) and the series it returned, and a digest (sha256 of its
  canonical JSON) that C(verify_report) recomputes.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import math
import operator
import os
import re
import tempfile
import time

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, check_timeout, check_url
from ansible_collections.modelops.shutdown.plugins.module_utils._prom_api import PromClient, PromError, format_value
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError, finite, validate

try:
    import fcntl
except ImportError:  # not on POSIX: the state file is then written without a lock
    fcntl = None

SCHEMA_VERSION = 1
KIND = 'modelops.shutdown/eligibility'
STATE_KIND = 'modelops.shutdown/eligibility-state'
ACTIONS = ('retire', 'freeze', 'notify')
NO_DATA = ('inconclusive', 'met', 'not_met')
COMPARISONS = ('<', '<=', '>', '>=', '==', '!=')
_OPERATORS = {'<': operator.lt, '<=': operator.le, '>': operator.gt, '>=': operator.ge, '==': operator.eq, '!=': operator.ne}
MET, NOT_MET, INCONCLUSIVE = 'met', 'not_met', 'inconclusive'

# Policy windows are weeks to months long: the week of _spec.MAX_SECONDS is too short for them.
MAX_DURATION_SECONDS = 400 * 86400
MIN_STEP_SECONDS = 1.0
MAX_POINTS = 11000  # Prometheus refuses a range query of more points per series
MAX_SAMPLES_KEPT = 200
FUTURE_SLACK_SECONDS = 300
PLACEHOLDERS = ('selector', 'model_name', 'model_version', 'targets')

_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_LABEL_NAME_RE = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')
_DURATION_PART_RE = re.compile(r'([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)')
_PLAIN_NUMBER_RE = re.compile(r'^[0-9]+(?:\.[0-9]+)?$')
_UNIT_SECONDS = {'w': 604800.0, 'd': 86400.0, 'h': 3600.0, 'm': 60.0, 's': 1.0, 'ms': 0.001}
_UNIT_ORDER = ('w', 'd', 'h', 'm', 's', 'ms')
_PLACEHOLDER_RE = re.compile(r'\$\{([^}]*)\}')
_REGEX_SPECIAL = set('\\.+*?()|[]{}^$')


class PolicyError(Exception):
    """Bad input (a policy, a model, a duration, a report, a state file); the message names where and what to do."""


# --------------------------------------------------------------------------------------------- durations

def parse_duration(value, where, minimum=0.0):
    """Seconds (a float) of C(value): a number of seconds, or a string C(90s), C(5m), C(1h30m), C(500ms), C(3d), C(2w).

    More than C(minimum) and at most 400 days; raises C(PolicyError) naming C(where) otherwise.
    """
    expected = ('expected a number of seconds or a duration such as 90s, 5m, 24h, 3d, 1h30m or 500ms '
                '(units w, d, h, m, s, ms, largest first, each at most once)')
    if isinstance(value, bool) or value is None:
        raise PolicyError('%s: %s, got %r' % (where, expected, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _PLAIN_NUMBER_RE.match(text):
            seconds = float(text)
        else:
            seconds = _parse_units(text, value, where, expected)
    else:
        raise PolicyError('%s: %s, got %s %r' % (where, expected, type(value).__name__, value))
    if not math.isfinite(seconds):
        raise PolicyError('%s: %s, got %r (not finite)' % (where, expected, value))
    if seconds <= minimum:
        raise PolicyError('%s must be more than %s seconds, got %r' % (where, minimum, value))
    if seconds > MAX_DURATION_SECONDS:
        raise PolicyError('%s must be at most 400 days (%d seconds), got %r' % (where, MAX_DURATION_SECONDS, value))
    return seconds


def _parse_units(text, value, where, expected):
    position = 0
    total = 0.0
    last_rank = -1
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        rank = _UNIT_ORDER.index(match.group(2))
        if rank <= last_rank:
            raise PolicyError('%s: %s; %r repeats a unit or has a larger unit after a smaller one' % (where, expected, value))
        last_rank = rank
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise PolicyError('%s: %s, got %r' % (where, expected, value))
    return total


def compare(value, comparison, threshold):
    """Whether C(value <comparison> threshold) holds; False for NaN (no number compares to it)."""
    return bool(_OPERATORS[comparison](value, threshold))


# --------------------------------------------------------------------------------------------- specs

def model_spec():
    """The options of one model (the module's C(models) suboptions)."""
    return dict(
        name=dict(type='str', required=True),
        version=dict(type='str', default=''),
        hosts=dict(type='list', elements='str', default=[]),
        labels=dict(type='dict'),
        targets=dict(type='list', elements='str', default=[]),
    )


def policy_spec():
    return dict(
        name=dict(type='str', required=True),
        version=dict(type='str', required=True),
        description=dict(type='str', default=''),
        applies_to=dict(type='dict'),
        # One action or several (the design brief's degraded policy notifies the owner and freezes the version).
        action=dict(type='list', elements='str', required=True, choices=list(ACTIONS)),
        rollback_window=dict(type='raw'),
        owner=dict(type='str'),
        no_data=dict(type='str', default='inconclusive', choices=list(NO_DATA)),
        conditions=dict(type='list', elements='raw', required=True),
    )


def applies_to_spec():
    return dict(models=dict(type='list', elements='str', default=['*']))


def condition_spec():
    spec = dict(
        name=dict(type='str', required=True),
        query=dict(type='str', required=True),
        compare=dict(type='str', required=True, choices=list(COMPARISONS)),
        threshold=dict(type='float', required=True),
        step=dict(type='raw'),
        consecutive=dict(type='int', default=1),
        no_data=dict(type='str', choices=list(NO_DATA)),
    )
    spec['for'] = dict(type='raw')
    return spec


def _checked(spec, value, where, **constraints):
    try:
        return validate(spec, value, where, **constraints)
    except SpecError as exc:
        raise PolicyError(str(exc))
    except (TypeError, ValueError, AttributeError) as exc:  # ansible-core's checks on a value of a shape they did not expect
        raise PolicyError('%s: %s' % (where, exc))


def _placeholder_problem(query):
    for match in _PLACEHOLDER_RE.finditer(query):
        if match.group(1) not in PLACEHOLDERS:
            return 'unknown placeholder ${%s}; the placeholders are %s' % (
                match.group(1), ', '.join('${%s}' % name for name in PLACEHOLDERS))
    rest = _PLACEHOLDER_RE.sub('', query)
    if '${' in rest:
        return 'a "${" is not closed by "}" (write ${selector}, ${model_name}, ${model_version} or ${targets})'
    return None


def check_condition(value, where, policy_no_data):
    condition = _checked(condition_spec(), value, where)
    if not condition['name'].strip():
        raise PolicyError('%s.name must not be empty' % where)
    if not condition['query'].strip():
        raise PolicyError('%s.query must not be empty: give a PromQL expression' % where)
    problem = _placeholder_problem(condition['query'])
    if problem:
        raise PolicyError('%s.query: %s' % (where, problem))
    if not finite(condition['threshold']):
        raise PolicyError('%s.threshold must be a finite number, got %s' % (where, condition['threshold']))
    if condition['consecutive'] < 1:
        raise PolicyError('%s.consecutive must be at least 1, got %s' % (where, condition['consecutive']))
    window = condition['for']
    condition['for_seconds'] = None if window is None else parse_duration(window, where + '.for')
    if condition['step'] is not None:
        if window is None:
            raise PolicyError('%s.step is given without "for": a step only applies to a range over a window' % where)
        step = parse_duration(condition['step'], where + '.step')
    elif window is not None:
        step = max(MIN_STEP_SECONDS, condition['for_seconds'] / 60.0)
    else:
        step = None
    if step is not None and condition['for_seconds'] / step + 1 > MAX_POINTS:
        raise PolicyError('%s: a window of %s s every %s s is more than %d points, which Prometheus refuses; '
                          'give a larger step' % (where, condition['for_seconds'], step, MAX_POINTS))
    condition['step_seconds'] = step
    condition['no_data'] = condition['no_data'] or policy_no_data
    return condition


def check_policy(value, where):
    """The policy C(value) validated and defaulted; raises C(PolicyError) naming C(where)."""
    policy = _checked(policy_spec(), value, where)
    actions = []
    for action in policy['action']:
        if action not in actions:
            actions.append(action)
    if not actions:
        raise PolicyError('%s.action must name at least one of %s' % (where, ', '.join(ACTIONS)))
    policy['action'] = actions
    if 'retire' in actions and policy['rollback_window'] is None:
        raise PolicyError('%s: action is retire but rollback_window is missing: how long the retirement can be rolled '
                          'back (for example 72h)' % where)
    if not _NAME_RE.match(policy['name']):
        raise PolicyError('%s.name must match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (letters, digits, ".", "_", "-"), got %r'
                          % (where, policy['name']))
    if not policy['version'].strip():
        raise PolicyError('%s.version must not be empty' % where)
    applies = _checked(applies_to_spec(), policy['applies_to'], where + '.applies_to')
    if not applies['models']:
        raise PolicyError('%s.applies_to.models must list at least one glob (V(*) for every model)' % where)
    policy['applies_to'] = applies
    if policy['rollback_window'] is not None:
        policy['rollback_window_seconds'] = parse_duration(policy['rollback_window'], where + '.rollback_window')
    else:
        policy['rollback_window_seconds'] = None
    conditions = policy['conditions']
    if not conditions:
        raise PolicyError('%s.conditions must list at least one condition' % where)
    checked = []
    names = set()
    for index, item in enumerate(conditions):
        condition = check_condition(item, '%s.conditions[%d]' % (where, index), policy['no_data'])
        if condition['name'] in names:
            raise PolicyError('%s.conditions[%d].name %r is used twice in this policy; condition names must be unique '
                              '(they key the state file)' % (where, index, condition['name']))
        names.add(condition['name'])
        checked.append(condition)
    policy['conditions'] = checked
    return policy


def check_policies(values):
    if not isinstance(values, list):
        raise PolicyError('policies must be a list of policies, got %s' % type(values).__name__)
    policies = []
    seen = set()
    for index, value in enumerate(values):
        policy = check_policy(value, 'policies[%d]' % index)
        ident = (policy['name'], policy['version'])
        if ident in seen:
            raise PolicyError('policies[%d]: policy %s version %s is listed twice' % (index, policy['name'], policy['version']))
        seen.add(ident)
        policies.append(policy)
    return policies


def check_model(value, where):
    model = _checked(model_spec(), value, where)
    if not model['name'].strip():
        raise PolicyError('%s.name must not be empty' % where)
    labels = model['labels']
    if labels is None:
        labels = {'model_name': model['name']}
    for name, label in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME_RE.match(name):
            raise PolicyError('%s.labels: %r is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)' % (where, name))
        if not isinstance(label, str):
            raise PolicyError('%s.labels.%s must be a string, got %s %r' % (where, name, type(label).__name__, label))
    model['labels'] = dict(labels)
    for index, target in enumerate(model['targets']):
        if not target.strip():
            raise PolicyError('%s.targets[%d] is empty; give the instance label of a scrape target (host:port)' % (where, index))
    model['key'] = model_key(model)
    return model


def check_models(values):
    if not isinstance(values, list):
        raise PolicyError('models must be a list of models, got %s' % type(values).__name__)
    models = []
    keys = set()
    for index, value in enumerate(values):
        model = check_model(value, 'models[%d]' % index)
        if model['key'] in keys:
            raise PolicyError('models[%d]: model %s is listed twice' % (index, model['key']))
        keys.add(model['key'])
        models.append(model)
    return models


def model_key(model):
    return '%s@%s' % (model['name'], model['version']) if model['version'] else model['name']


def applies(policy, model):
    return any(fnmatch.fnmatchcase(model['name'], glob) or fnmatch.fnmatchcase(model['key'], glob)
               for glob in policy['applies_to']['models'])


# --------------------------------------------------------------------------------------------- queries

def promql_string(text):
    """C(text) escaped for the inside of a PromQL double-quoted string."""
    return text.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n').replace('\r', '\\r').replace('\t', '\\t')


def regex_escape(text):
    """C(text) escaped for an RE2 regular expression (PromQL's C(=~) matcher)."""
    return ''.join('\\' + char if char in _REGEX_SPECIAL else char for char in text)


def targets_regex(targets):
    return '|'.join(regex_escape(target) for target in targets)


def render(query, model):
    """C(query) with its placeholders replaced for C(model) (validated by C(check_model))."""
    values = {
        'selector': ','.join('%s="%s"' % (name, promql_string(model['labels'][name])) for name in sorted(model['labels'])),
        'model_name': promql_string(model['name']),
        'model_version': promql_string(model['version']),
        'targets': promql_string(targets_regex(model['targets'])),
    }
    return _PLACEHOLDER_RE.sub(lambda match: values[match.group(1)], query)


def up_query(model):
    return 'up{instance=~"%s"}' % promql_string(targets_regex(model['targets']))


class _Breaker(object):
    """Stops sending once Prometheus could not be reached: each later query would wait its timeout too."""

    def __init__(self, client):
        self.client = client
        self.down = None
        self.sent = 0

    def ask(self, method, *args):
        if self.down is not None:
            raise PromError('not sent: Prometheus %s did not answer an earlier query (%s)' % (self.client.shown_url, self.down),
                            kind='http', connection=True)
        self.sent += 1
        try:
            return getattr(self.client, method)(*args)
        except PromError as exc:
            if exc.connection:
                self.down = str(exc)
            raise


def _targets_state(breaker, model, now):
    """C((targets, problem)): each declared target with its state, and why the model cannot be judged (or None)."""
    if not model['targets']:
        return [], 'model %s declares no targets: nothing shows whether Prometheus scrapes it' % model['key']
    query = up_query(model)
    try:
        answer = breaker.ask('instant', query, now)
    except PromError as exc:
        return ([{'instance': t, 'state': 'unknown', 'value': None} for t in model['targets']],
                'the up query of model %s failed: %s' % (model['key'], exc))
    if answer['resultType'] != 'vector':
        return ([{'instance': t, 'state': 'unknown', 'value': None} for t in model['targets']],
                'the up query %r of model %s returned a %s, expected a vector' % (query, model['key'], answer['resultType']))
    found = {}
    for series in answer['result']:
        instance = series['metric'].get('instance')
        value = series['value'][1]
        if instance is not None:
            found[instance] = value if instance not in found or math.isnan(found[instance]) else min(found[instance], value)
    targets = []
    problems = []
    for target in model['targets']:
        if target not in found:
            targets.append({'instance': target, 'state': 'not_scraped', 'value': None})
            problems.append('%s is not scraped by Prometheus: no up series' % target)
        elif found[target] == 1:
            targets.append({'instance': target, 'state': 'up', 'value': 1.0})
        else:
            targets.append({'instance': target, 'state': 'down', 'value': format_value(found[target])})
            problems.append('%s is down: up is %s' % (target, format_value(found[target])))
    return targets, ('; '.join(problems) or None)


def _describe(labels):
    return '{%s}' % ', '.join('%s="%s"' % (name, labels[name]) for name in sorted(labels))


def _kept_samples(samples):
    rows = [[stamp, format_value(value)] for stamp, value in samples]
    if len(rows) <= MAX_SAMPLES_KEPT:
        return rows
    half = MAX_SAMPLES_KEPT // 2
    return rows[:half] + rows[-half:]


def _no_data(condition):
    outcome = condition['no_data']
    reason = 'no data: the query returned no series'
    if outcome != INCONCLUSIVE:
        reason += ' (no_data: %s)' % outcome
    return outcome, reason


def _judge_instant(condition, answer, record):
    kind = answer['resultType']
    if kind == 'scalar':
        series = [{'metric': {}, 'value': answer['result']}]
    elif kind == 'vector':
        series = answer['result']
    else:
        return INCONCLUSIVE, 'the query returned a %s, expected a vector or a scalar' % kind
    record['series'] = [{'labels': s['metric'], 'value': format_value(s['value'][1])} for s in series]
    if not series:
        return _no_data(condition)
    for item in series:
        value = item['value'][1]
        if not math.isfinite(value):
            return INCONCLUSIVE, 'series %s is %s, which is no evidence either way' % (_describe(item['metric']), format_value(value))
    for item in series:
        value = item['value'][1]
        if not compare(value, condition['compare'], condition['threshold']):
            return NOT_MET, 'series %s is %s, not %s %s' % (
                _describe(item['metric']), format_value(value), condition['compare'], condition['threshold'])
    return MET, 'every series (%d) is %s %s' % (len(series), condition['compare'], condition['threshold'])


def _judge_range(condition, answer, record, start, end, step):
    if answer['resultType'] != 'matrix':
        return INCONCLUSIVE, 'the range query returned a %s, expected a matrix' % answer['resultType']
    series = answer['result']
    record['series'] = [{'labels': s['metric'], 'samples': _kept_samples(s['values']), 'count': len(s['values'])}
                        for s in series]
    if not series:
        return _no_data(condition)
    window = end - start
    expected = int(math.floor(window / step + 1e-9)) + 1
    for item in series:
        samples = item['values']
        covered = samples[-1][0] - samples[0][0] if samples else 0.0
        if not samples or samples[0][0] > start + step or len(samples) < expected - 1:
            return INCONCLUSIVE, 'series %s: data covers %s s of the %s s window (%d of %d samples every %s s)' % (
                _describe(item['metric']), _number(covered), _number(window), len(samples), expected, _number(step))
        for stamp, value in samples:
            if not math.isfinite(value):
                return INCONCLUSIVE, 'series %s is %s at %s, which is no evidence either way' % (
                    _describe(item['metric']), format_value(value), _number(stamp))
    for item in series:
        for stamp, value in item['values']:
            if not compare(value, condition['compare'], condition['threshold']):
                return NOT_MET, 'series %s is %s at %s, not %s %s' % (
                    _describe(item['metric']), format_value(value), _number(stamp), condition['compare'], condition['threshold'])
    return MET, 'every sample of every series (%d) over the %s s window is %s %s' % (
        len(series), _number(window), condition['compare'], condition['threshold'])


def _number(value):
    return int(value) if float(value).is_integer() else round(value, 3)


def evaluate_condition(breaker, condition, model, now, blocked=None):
    """The record of one condition for one model (before hysteresis): query, times, result, reason, series."""
    query = render(condition['query'], model)
    record = {'name': condition['name'], 'query': query, 'compare': condition['compare'],
              'threshold': condition['threshold'], 'consecutive': condition['consecutive'], 'streak': None,
              'no_data': condition['no_data'], 'series': []}
    if condition['for_seconds'] is None:
        record.update(type='instant', time=now)
    else:
        record.update(type='range', start=now - condition['for_seconds'], end=now, step=condition['step_seconds'])
    if blocked:
        record.update(result=INCONCLUSIVE, reason=blocked)
        return record
    try:
        if record['type'] == 'instant':
            answer = breaker.ask('instant', query, now)
            result, reason = _judge_instant(condition, answer, record)
        else:
            answer = breaker.ask('range', query, record['start'], now, record['step'])
            result, reason = _judge_range(condition, answer, record, record['start'], now, record['step'])
    except PromError as exc:
        result, reason = INCONCLUSIVE, str(exc)
    record.update(result=result, reason=reason)
    return record


# --------------------------------------------------------------------------------------------- state

def streak_key(policy, model, condition):
    return '%s@%s/%s/%s' % (policy['name'], policy['version'], model['key'], condition['name'])


def read_state(path):
    """The streaks of the state file C(path) (C({key: {streak, updated_at}})); empty when the file does not exist."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            text = handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return {}
        raise PolicyError('Cannot read state_file %s: %s' % (path, exc.strerror or exc))
    except ValueError as exc:
        raise PolicyError('Cannot read state_file %s: %s' % (path, exc))
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PolicyError('state_file %s is not JSON (%s); it is written by this module only: remove it to start every '
                          'streak again from 0' % (path, exc))
    streaks = data.get('streaks') if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get('kind') != STATE_KIND or not isinstance(streaks, dict) or not all(
            isinstance(item, dict) and isinstance(item.get('streak'), int) and not isinstance(item.get('streak'), bool)
            and item['streak'] >= 0 for item in streaks.values()):
        raise PolicyError('state_file %s is not a state file of this module (expected {"kind": "%s", "streaks": {key: '
                          '{"streak": N}}}); give another path, or remove it to start every streak again from 0'
                          % (path, STATE_KIND))
    return streaks


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive C(flock) on C(<path>.lock) (the state file itself is replaced, so it cannot carry the lock)."""
    lock_path = path + '.lock'
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o700)  # the first evaluation on this controller
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PolicyError('Cannot create the lock file %s of state_file %s: %s' % (lock_path, path, exc.strerror or exc))
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def write_atomic(path, text, what):
    """Write C(text) to C(path) through a temporary file in the same folder and a rename; mode 0600."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        handle, temp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=folder)
    except OSError as exc:
        raise PolicyError('Cannot write %s %s: %s' % (what, path, exc.strerror or exc))
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except (OSError, ValueError) as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise PolicyError('Cannot write %s %s: %s' % (what, path, getattr(exc, 'strerror', None) or exc))


def apply_streaks(records, streaks, now):
    """Apply hysteresis to C(records) (C((key, condition, record)) of the conditions with C(consecutive > 1)) with the
    C(streaks) read from the state file; return the new streaks."""
    updated = dict(streaks)
    for key, condition, record in records:
        previous = streaks.get(key, {}).get('streak', 0)
        streak = previous + 1 if record['result'] == MET else 0
        updated[key] = {'streak': streak, 'updated_at': now}
        record['streak'] = streak
        if record['result'] == MET and streak < condition['consecutive']:
            record['result'] = NOT_MET
            record['reason'] = 'held %d of %d consecutive evaluations (%s)' % (streak, condition['consecutive'], record['reason'])
    return updated


def state_text(streaks):
    return json.dumps({'kind': STATE_KIND, 'schema_version': SCHEMA_VERSION, 'streaks': streaks}, sort_keys=True, indent=1) + '\n'


# --------------------------------------------------------------------------------------------- report

def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True, allow_nan=False)


def digest_of(report):
    """sha256 (hex) of the canonical JSON of C(report) without its C(digest) key."""
    body = dict((key, item) for key, item in report.items() if key != 'digest')
    return hashlib.sha256(canonical(body).encode('ascii')).hexdigest()


def policy_digest(policy):
    shown = dict((key, item) for key, item in policy.items() if not key.endswith('_seconds'))
    shown['conditions'] = [dict((k, v) for k, v in c.items() if not k.endswith('_seconds')) for c in policy['conditions']]
    return hashlib.sha256(canonical(shown).encode('ascii')).hexdigest()


def iso(stamp):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(stamp))


def decide(conditions):
    results = [c['result'] for c in conditions]
    if NOT_MET in results:
        return NOT_MET
    if INCONCLUSIVE in results:
        return INCONCLUSIVE
    return MET


def _policy_reason(decision, conditions):
    if decision == MET:
        return 'every condition is met'
    picked = [c for c in conditions if c['result'] == decision]
    return '; '.join('%s: %s' % (c['name'], c['reason']) for c in picked)


def summarize(model_record):
    """The retire decision, deciding policy and actions of a model record (in place)."""
    retire_policies = [p for p in model_record['policies'] if 'retire' in p['action']]
    met = [p for p in model_record['policies'] if p['decision'] == MET]
    model_record['actions'] = [{'action': action, 'policy': p['name'], 'version': p['version'], 'owner': p['owner']}
                               for p in met for action in p['action']]
    deciding = next((p for p in retire_policies if p['decision'] == MET), None)
    if deciding is not None:
        model_record['retire'] = 'eligible'
        model_record['reason'] = 'policy %s version %s is met' % (deciding['name'], deciding['version'])
        model_record['deciding_policy'] = {'name': deciding['name'], 'version': deciding['version'],
                                           'rollback_window': deciding['rollback_window']}
        return model_record
    model_record['deciding_policy'] = None
    if not retire_policies:
        model_record['retire'] = 'not_eligible'
        model_record['reason'] = 'no retire policy applies to model %s' % model_record['key']
    elif any(p['decision'] == INCONCLUSIVE for p in retire_policies):
        model_record['retire'] = INCONCLUSIVE
        model_record['reason'] = '; '.join('policy %s version %s is inconclusive: %s' % (p['name'], p['version'], p['reason'])
                                           for p in retire_policies if p['decision'] == INCONCLUSIVE)
    else:
        model_record['retire'] = 'not_eligible'
        model_record['reason'] = '; '.join('policy %s version %s is not met: %s' % (p['name'], p['version'], p['reason'])
                                           for p in retire_policies)
    return model_record


def collect(client, policies, models, now):
    """C((model_records, tracked, breaker)): the targets and conditions of every applicable policy of every model,
    queried at C(now), before hysteresis; C(tracked) lists the conditions that count consecutive evaluations."""
    breaker = _Breaker(client)
    tracked = []
    model_records = []
    for model in models:
        targets, blocked = _targets_state(breaker, model, now)
        if blocked and not blocked.startswith('model '):
            blocked = 'model %s cannot be judged: %s' % (model['key'], blocked)
        record = {'key': model['key'], 'name': model['name'], 'version': model['version'], 'hosts': list(model['hosts']),
                  'labels': dict(model['labels']), 'targets': targets, 'policies': []}
        for policy in policies:
            if not applies(policy, model):
                continue
            conditions = []
            for condition in policy['conditions']:
                condition_record = evaluate_condition(breaker, condition, model, now, blocked)
                if condition['consecutive'] > 1:
                    tracked.append((streak_key(policy, model, condition), condition, condition_record))
                conditions.append(condition_record)
            record['policies'].append({'name': policy['name'], 'version': policy['version'], 'action': policy['action'],
                                       'owner': policy['owner'], 'rollback_window': policy['rollback_window_seconds'],
                                       'conditions': conditions})
        model_records.append(record)
    return model_records, tracked, breaker


def finish(model_records, tracked, streaks, policies, shown_url, now):
    """C((report, new_streaks)): hysteresis applied with C(streaks), decisions made, the report with its digest.
    C(new_streaks) is None when no condition counts consecutive evaluations."""
    new_streaks = apply_streaks(tracked, streaks or {}, now) if tracked else None
    for record in model_records:
        for policy_record in record['policies']:
            policy_record['decision'] = decide(policy_record['conditions'])
            policy_record['reason'] = _policy_reason(policy_record['decision'], policy_record['conditions'])
        summarize(record)
    report = {
        'schema_version': SCHEMA_VERSION,
        'kind': KIND,
        'evaluated_at': now,
        'evaluated_at_iso': iso(now),
        'prometheus': {'url': shown_url},
        'policies': [{'name': p['name'], 'version': p['version'], 'action': p['action'], 'digest': policy_digest(p)}
                     for p in policies],
        'models': model_records,
    }
    report['digest'] = digest_of(report)
    return report, new_streaks


def evaluate(client, policies, models, now, streaks=None):
    """C((report, new_streaks, breaker)): C(collect) then C(finish) with C(streaks)."""
    model_records, tracked, breaker = collect(client, policies, models, now)
    report, new_streaks = finish(model_records, tracked, streaks, policies, client.shown_url, now)
    return report, new_streaks, breaker


def needs_state(policies):
    return any(c['consecutive'] > 1 for p in policies for c in p['conditions'])


def report_names(now):
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))
    return 'eligibility-%s.json' % stamp, 'eligibility-%s.md' % stamp


def _cell(value):
    text = '' if value is None else str(value)
    return text.replace('\\', '\\\\').replace('|', '\\|').replace('\r', ' ').replace('\n', ' ')


def _shown_value(condition):
    values = []
    for series in condition.get('series') or []:
        if 'value' in series:
            values.append(str(series['value']))
        elif series.get('samples'):
            values.append('%s (last of %d)' % (series['samples'][-1][1], series.get('count', len(series['samples']))))
    if len(values) > 3:
        values = values[:3] + ['... %d series' % len(condition['series'])]
    return ', '.join(values) or '-'


def markdown(report):
    lines = ['# Retirement eligibility report', '',
             '- Evaluated at: %s (%s)' % (report['evaluated_at_iso'], report['evaluated_at']),
             '- Prometheus: %s' % report['prometheus']['url'],
             '- Digest (sha256): `%s`' % report['digest'], '']
    for model in report['models']:
        lines.append('## %s' % model['key'])
        lines.append('')
        lines.append('**Retire: %s** - %s' % (model['retire'], _cell(model['reason'])))
        lines.append('')
        if model['targets']:
            lines.append('Targets: %s' % ', '.join('%s (%s)' % (t['instance'], t['state']) for t in model['targets']))
            lines.append('')
        if model['policies']:
            lines.append('| Policy | Condition | Result | Value | Reason |')
            lines.append('|---|---|---|---|---|')
            for policy in model['policies']:
                for condition in policy['conditions']:
                    lines.append('| %s | %s | %s | %s | %s |' % (
                        _cell('%s@%s (%s: %s)' % (policy['name'], policy['version'], '+'.join(policy['action']), policy['decision'])),
                        _cell(condition['name']), _cell(condition['result']), _cell(_shown_value(condition)),
                        _cell(condition['reason'])))
            lines.append('')
    return '\n'.join(lines) + '\n'


def write_report(report, folder):
    """Write the report as JSON and Markdown into C(folder) (created 0700); return both paths."""
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, 0o700)
        except OSError as exc:
            raise PolicyError('Cannot create report_dir %s: %s' % (folder, exc.strerror or exc))
    json_name, md_name = report_names(report['evaluated_at'])
    json_path = os.path.join(folder, json_name)
    md_path = os.path.join(folder, md_name)
    write_atomic(json_path, json.dumps(report, sort_keys=True, indent=1, allow_nan=False) + '\n', 'report')
    write_atomic(md_path, markdown(report), 'report')
    return json_path, md_path


def model_summaries(report):
    return dict((m['key'], {'name': m['name'], 'version': m['version'], 'hosts': m['hosts'], 'retire': m['retire'],
                            'reason': m['reason'], 'deciding_policy': m['deciding_policy'], 'actions': m['actions']})
                for m in report['models'])


def verify_report(path, now, max_age):
    """The report read from C(path), checked: kind, schema version, digest, age. Raises C(PolicyError)."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            text = handle.read()
    except (IOError, ValueError) as exc:
        raise PolicyError('Cannot read report %s: %s' % (path, getattr(exc, 'strerror', None) or exc))
    try:
        report = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PolicyError('report %s is not JSON: %s' % (path, exc))
    return check_report(report, path, now, max_age)


def check_report(report, path, now, max_age):
    """C(report) (a decoded eligibility report; C(path) names where it came from in messages), checked: kind,
    schema version, digest, age. Raises C(PolicyError)."""
    if not isinstance(report, dict):
        raise PolicyError('report %s is not an eligibility report: expected a JSON object, got %s' % (path, type(report).__name__))
    if report.get('kind') != KIND:
        raise PolicyError('report %s is of kind %r; expected %r' % (path, report.get('kind'), KIND))
    if report.get('schema_version') != SCHEMA_VERSION or isinstance(report.get('schema_version'), bool):
        raise PolicyError('report %s has schema_version %r; this module reads schema_version %d only'
                          % (path, report.get('schema_version'), SCHEMA_VERSION))
    claimed = report.get('digest')
    if not isinstance(claimed, str):
        raise PolicyError('report %s has no digest; it was not made by this module' % path)
    try:
        actual = digest_of(report)
    except (TypeError, ValueError) as exc:
        raise PolicyError('report %s cannot be hashed (%s): the report was changed after it was made' % (path, exc))
    if actual != claimed:
        raise PolicyError('report %s: the report was changed after it was made: digest %s, content hashes to %s'
                          % (path, claimed, actual))
    stamp = report.get('evaluated_at')
    if not finite(stamp):
        raise PolicyError('report %s has no valid evaluated_at (got %r)' % (path, stamp))
    if now - stamp > max_age:
        raise PolicyError('report %s was made at %s, %d s ago, more than max_report_age=%s s: evaluate again'
                          % (path, report.get('evaluated_at_iso'), now - stamp, max_age))
    if stamp - now > FUTURE_SLACK_SECONDS:
        raise PolicyError('report %s was made at %s, %d s in the future (more than %d s): check the clocks of the machines'
                          % (path, report.get('evaluated_at_iso'), stamp - now, FUTURE_SLACK_SECONDS))
    models = report.get('models')
    required = ('key', 'name', 'version', 'hosts', 'retire', 'reason', 'deciding_policy', 'actions')
    if not isinstance(models, list) or not all(isinstance(m, dict) and all(k in m for k in required) for m in models):
        raise PolicyError('report %s: "models" is not a list of model records with key, name, version, hosts, retire, '
                          'reason, deciding_policy and actions' % path)
    return report


# --------------------------------------------------------------------------------------------- the module

def argument_spec():
    """The argument spec of the C(retirement_eligibility) module."""
    return dict(
        prometheus=dict(type='dict', options=dict(
            url=dict(type='str', required=True),
            token=dict(type='str', no_log=True),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            timeout=dict(type='float', default=10.0),
        )),
        models=dict(type='list', elements='dict', options=model_spec()),
        policies=dict(type='list', elements='dict'),
        state_file=dict(type='path'),
        report_dir=dict(type='path'),
        report=dict(type='path'),
        report_data=dict(type='dict'),
        max_report_age=dict(type='float', default=3600.0),
    )


MODULE_CONSTRAINTS = dict(
    mutually_exclusive=[('report', 'report_data', 'policies'), ('report', 'prometheus'), ('report', 'models'),
                        ('report_data', 'prometheus'), ('report_data', 'models')],
    required_one_of=[('report', 'report_data', 'policies')],
    required_by={'policies': ('prometheus', 'models')},
)


def _result(report, from_report, changed, report_path, md_path, msg):
    summaries = model_summaries(report)
    return {
        'changed': changed, 'evaluated_at': report['evaluated_at'], 'evaluated_at_iso': report.get('evaluated_at_iso'),
        'digest': report['digest'], 'report': report, 'report_path': report_path, 'report_md_path': md_path,
        'models': summaries, 'eligible': [k for k, m in summaries.items() if m['retire'] == 'eligible'],
        'inconclusive': [k for k, m in summaries.items() if m['retire'] == INCONCLUSIVE], 'from_report': from_report,
        'msg': msg,
    }


def _lists(summaries):
    groups = []
    for title, wanted in (('eligible', 'eligible'), ('inconclusive', INCONCLUSIVE), ('not eligible', 'not_eligible')):
        keys = [k for k, m in summaries.items() if m['retire'] == wanted]
        groups.append('%s: %s' % (title, ', '.join(keys) if keys else 'none'))
    return '; '.join(groups)


def make_client(prometheus):
    """The C(PromClient) of the module's C(prometheus) option; raises C(PolicyError) for a bad URL or timeout."""
    try:
        url = check_url(prometheus['url'], 'prometheus.url')
        timeout = check_timeout(prometheus['timeout'], 'timeout (prometheus.timeout)')
    except HttpError as exc:
        raise PolicyError(str(exc))
    return PromClient(url, token=prometheus.get('token'), timeout=timeout, validate_certs=prometheus['validate_certs'],
                      ca_path=prometheus.get('ca_path'))


def run(params, check_mode, now, client_factory=make_client):
    """Do what the module is asked; return its result, or raise C(PolicyError) (bad input, a file that cannot be
    written, a report that fails verification). C(client_factory(prometheus_params)) gives the C(PromClient)."""
    if params.get('report') or params.get('report_data') is not None:
        seconds = params['max_report_age']
        if not finite(seconds) or seconds <= 0:
            raise PolicyError('max_report_age must be a finite number of seconds more than 0, got %s' % seconds)
        if params.get('report'):
            where, report = params['report'], verify_report(params['report'], now, seconds)
        else:
            # The report handed over by an earlier job (AWX artifacts): the same checks as a file's.
            where = 'passed as report_data'
            report = check_report(params['report_data'], where, now, seconds)
        return _result(report, True, False, params.get('report'), None,
                       'Report %s verified (digest %s, made %s): %s.' % (
                           where, report['digest'], report.get('evaluated_at_iso'),
                           _lists(model_summaries(report))))
    policies = check_policies(params['policies'])
    models = check_models(params['models'])
    state_file = params.get('state_file')
    if needs_state(policies) and not state_file:
        raise PolicyError('state_file is required: a condition counts consecutive evaluations (consecutive > 1), '
                          'which are kept there between runs')
    if needs_state(policies):
        read_state(state_file)  # a state file that cannot be read fails the task before any query is sent
    client = client_factory(params['prometheus'])
    records, tracked, breaker = collect(client, policies, models, now)
    if tracked and not check_mode:
        # Read, count and write under the lock, so that two runs at once do not lose a count.
        with locked(state_file):
            report, new_streaks = finish(records, tracked, read_state(state_file), policies, client.shown_url, now)
            write_atomic(state_file, state_text(new_streaks), 'state_file')
    else:
        # Check mode reads the state and reports what the streaks would be, writing nothing.
        streaks = read_state(state_file) if tracked else {}
        report, new_streaks = finish(records, tracked, streaks, policies, client.shown_url, now)
    changed = False
    report_path = md_path = None
    if params.get('report_dir') and not check_mode:
        report_path, md_path = write_report(report, params['report_dir'])
        changed = True
    if new_streaks is not None and not check_mode:
        changed = True
    summaries = model_summaries(report)
    msg = 'Evaluated %d policies for %d models at %s: %s.' % (
        len(policies), len(models), report['evaluated_at_iso'], _lists(summaries))
    if breaker.down is not None:
        msg = ('Prometheus %s could not be reached (%s): every condition not yet evaluated is inconclusive and no model is '
               'eligible on this evidence. %s' % (client.shown_url, breaker.down, msg))
    if report_path:
        msg += ' Report: %s (digest %s).' % (report_path, report['digest'])
    elif check_mode:
        msg += ' Check mode: no report or state file written.'
    return _result(report, False, changed, report_path, md_path, msg)
