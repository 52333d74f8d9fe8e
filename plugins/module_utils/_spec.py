# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of nested option dicts against another module's argument spec.

Private to this collection. A per-phase module (C(host_shutdown), C(lb_batch_state)) takes, as one
option, the options of a public module (C(model_drain), C(unit_stop), C(model_health_state) ...).
It validates them with that module's own spec, so both accept exactly the same input and give
the same errors, prefixed with where the value came from.
"""

from __future__ import annotations

import math

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


class SpecError(Exception):
    """Options that do not match the spec; the message names the option path and what was expected."""


def validate(spec, value, where, **constraints):
    """Return C(value) validated and defaulted by C(spec) (a module argument spec), or raise C(SpecError).

    C(constraints) are the C(AnsibleModule) keywords C(mutually_exclusive), C(required_one_of),
    C(required_if), C(required_together), C(required_by).
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise SpecError('%s must be a dict, got %s' % (where, type(value).__name__))
    # An option given as null is an option not given (as an Ansible task passes it), so its default applies.
    value = dict((key, item) for key, item in value.items() if item is not None)
    # guard_scalar_dicts: a scalar given for nested options is a type error, not a traceback.
    result = ArgumentSpecValidator(guard_scalar_dicts(spec, value), **constraints).validate(value)
    if result.error_messages:
        raise SpecError('%s: %s' % (where, '; '.join(result.error_messages)))
    return result.validated_parameters


def finite(value):
    """True for an int or float that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The longest wait or timeout any option accepts: a week. Anything longer is a typo (1e300) and would
# overflow the platform's time_t in socket timeouts and sleeps.
MAX_SECONDS = 7 * 24 * 3600


def seconds_problem(name, value, minimum=0.0, above=False, maximum=MAX_SECONDS, allow_none=True):
    """None when C(value) is an acceptable number of seconds for option C(name), else the problem as a sentence.

    C(above) makes C(minimum) exclusive (a timeout must be more than 0); C(maximum) is inclusive.
    """
    if value is None and allow_none:
        return None
    if not finite(value):
        return '%s must be a finite number of seconds, got %s' % (name, value)
    if above and value <= minimum:
        return '%s must be more than %s seconds, got %s' % (name, minimum, value)
    if not above and value < minimum:
        return '%s must be at least %s seconds, got %s' % (name, minimum, value)
    if value > maximum:
        return '%s must be at most %s seconds (%s days), got %s' % (name, maximum, maximum // 86400, value)
    return None


def number_problems(spec, params, where='', seconds=None, _path=''):
    """Problems with the numbers of C(params) (validated by C(spec)), walking nested dicts and lists of dicts.

    Every C(float) or C(int) option given must be finite and not negative (an argument spec accepts
    C(nan), C(inf) and C(-1) for a float). C(seconds) maps option paths relative to C(spec)
    (C(haproxy.timeout)) to C(seconds_problem) keyword arguments, for the options that are durations.
    Messages name the option as C(where) + path. Returns a list of sentences.
    """
    seconds = seconds or {}
    problems = []
    if not isinstance(params, dict):
        return problems
    for name, option in spec.items():
        value = params.get(name)
        if value is None:
            continue
        path = _path + name
        shown = where + path
        kind = option.get('type')
        if path in seconds:
            problem = seconds_problem(shown, value, **seconds[path])
            if problem:
                problems.append(problem)
        elif kind in ('float', 'int'):
            if not finite(value):
                problems.append('%s must be a finite number, got %s' % (shown, value))
            elif value < 0:
                problems.append('%s must not be negative, got %s' % (shown, value))
        suboptions = option.get('options')
        if suboptions and kind == 'dict':
            problems.extend(number_problems(suboptions, value, where, seconds, path + '.'))
        elif suboptions and kind == 'list' and isinstance(value, list):
            for index, item in enumerate(value):
                problems.extend(number_problems(suboptions, item, where, seconds, '%s[%d].' % (path, index)))
    return problems


_SUBSPEC_KEYS = ('options', 'mutually_exclusive', 'required_one_of', 'required_together', 'required_if', 'required_by',
                 'apply_defaults')


def _scalar(value):
    return value is not None and not isinstance(value, (dict, str))


def guard_scalar_dicts(argument_spec, params):
    """C(argument_spec), or a copy where a dict option (or list of dicts) given a scalar such as C(0) or C(true) has
    no suboptions.

    ansible-core validates the suboptions of such a value before it reports the type error, and fails with a
    traceback (C(argument of type 'int' is not iterable)); without suboptions it reports the type error
    (C(argument 'haproxy' is of type int and we were unable to convert to dict)). A scalar holds no nested
    secret, so dropping the suboptions (and their no_log) of that option loses nothing.
    """
    if not isinstance(params, dict):
        return argument_spec
    guarded = None
    for name, option in argument_spec.items():
        suboptions = option.get('options')
        if not suboptions or name not in params:
            continue
        value = params[name]
        if option.get('type') == 'dict':
            items = [value]
        elif option.get('type') == 'list' and option.get('elements') == 'dict':
            items = value if isinstance(value, list) else [value]
        else:
            continue
        replacement = None
        if any(_scalar(item) for item in items):
            replacement = dict((key, item) for key, item in option.items() if key not in _SUBSPEC_KEYS)
        else:
            for item in items:
                inner = guard_scalar_dicts(suboptions, item)
                if inner is not suboptions:
                    replacement = dict(option, options=inner)
                    suboptions = inner
        if replacement is not None:
            guarded = guarded if guarded is not None else dict(argument_spec)
            guarded[name] = replacement
    return argument_spec if guarded is None else guarded


def module_argument_spec(argument_spec):
    """C(argument_spec) guarded by C(guard_scalar_dicts) against the module's raw parameters, for C(AnsibleModule).

    Where the raw parameters cannot be read here, C(AnsibleModule) will say why itself: the spec is returned as is.
    """
    try:
        from ansible.module_utils.basic import _load_params
        params = _load_params()
    except Exception:  # no parameters to read (ansible-test reading the spec, a changed ansible-core): nothing to guard
        return argument_spec
    return guard_scalar_dicts(argument_spec, params)


def journal_option():
    """The C(journal) option (doc fragment C(modelops.shutdown.journal)): the rollout's journal on the controller,
    which the action plugins of the modules that take it handle."""
    return dict(type='dict', options=dict(path=dict(type='path', required=True), run=dict(type='str', required=True)))
