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
    result = ArgumentSpecValidator(spec, **constraints).validate(value)
    if result.error_messages:
        raise SpecError('%s: %s' % (where, '; '.join(result.error_messages)))
    return result.validated_parameters


def finite(value):
    """True for an int or float that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
