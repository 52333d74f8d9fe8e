# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules AWX applies to a survey spec, written down from what AWX's API does (not AWX's code).

AWX checks a spec when it is POSTed to /api/v2/job_templates/<id>/survey_spec/ (JobTemplateSurveySpec in
awx/api/views): name, description (strings) and spec (a non-empty list); each question an object with
type, question_name, variable (strings) and required (a boolean); no variable twice; type one of the seven
AWX knows; a default (other than '') of the type's Python type (str, int, float); min and max integers
when given; choices for the two choice types, a single default for multiplechoice, every default among
the choices. At launch (SurveyJobTemplateMixin in awx/main/models/mixins.py) a default that breaks the
question's limits is silently not applied: for text, textarea and password min/max bound the length, for
integer and float the value. That silent drop is an error here: a default that AWX would ignore is a bug.
"""

from __future__ import annotations

ALLOWED_TYPES = {
    'text': str,
    'textarea': str,
    'password': str,
    'multiplechoice': str,
    'multiselect': str,
    'integer': int,
    'float': float,
}
_TEXT_TYPES = ('text', 'textarea', 'password')
_CHOICE_TYPES = ('multiplechoice', 'multiselect')


def _choices(question):
    choices = question.get('choices')
    if isinstance(choices, str):
        return [c for c in choices.splitlines() if c.strip()]
    return list(choices or [])


def _limit(question, key):
    value = question.get(key)
    return None if value in ('', None) else value


def _default_errors(idx, question):
    qtype, default = question['type'], question['default']
    low, high = _limit(question, 'min'), _limit(question, 'max')
    if qtype in _TEXT_TYPES:
        size = len(default)
        if default == '':
            return []  # AWX: an empty default is no default
        if low is not None and size < low:
            return [f"question {idx}: default {default!r} is shorter than min {low}"]
        if high is not None and size > high:
            return [f"question {idx}: default {default!r} is longer than max {high}"]
    elif qtype in ('integer', 'float'):
        if low is not None and default < low:
            return [f"question {idx}: default {default} is below min {low}"]
        if high is not None and default > high:
            return [f"question {idx}: default {default} is above max {high}"]
    return []


def survey_errors(spec):
    """Every way the survey spec breaks AWX's rules, as messages; [] when AWX accepts it."""
    if not isinstance(spec, dict):
        return ['the survey spec is not a JSON object']
    errors = []
    for field, kind in (('name', str), ('description', str), ('spec', list)):
        if field not in spec:
            errors.append(f"field {field!r} is missing")
        elif not isinstance(spec[field], kind):
            errors.append(f"field {field!r} must be a {kind.__name__}")
    if errors:
        return errors
    if not spec['spec']:
        return ["'spec' has no questions"]
    seen = set()
    for idx, question in enumerate(spec['spec']):
        if not isinstance(question, dict):
            errors.append(f"question {idx} is not a JSON object")
            continue
        missing = False
        for field, kind in (('type', str), ('question_name', str), ('variable', str), ('required', bool)):
            if field not in question:
                errors.append(f"question {idx}: {field!r} is missing")
                missing = True
            elif not isinstance(question[field], kind):
                errors.append(f"question {idx}: {field!r} must be a {kind.__name__}")
                missing = True
        if missing:
            continue
        if question['variable'] in seen:
            errors.append(f"question {idx}: variable {question['variable']!r} is asked twice")
        seen.add(question['variable'])
        qtype = question['type']
        if qtype not in ALLOWED_TYPES:
            errors.append(f"question {idx}: type {qtype!r} is not one of {', '.join(ALLOWED_TYPES)}")
            continue
        for key in ('min', 'max'):
            value = question.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                errors.append(f"question {idx}: {key} must be an integer")
        has_default = 'default' in question and question['default'] != ''
        if has_default:
            default = question['default']
            expected = ALLOWED_TYPES[qtype]
            # bool is an int to Python, never to a survey
            if isinstance(default, bool) or not isinstance(default, expected):
                errors.append(f"question {idx}: default {default!r} must be a {expected.__name__} for type {qtype}")
                continue
        if qtype in _CHOICE_TYPES:
            if 'choices' not in question:
                errors.append(f"question {idx}: type {qtype} needs choices")
                continue
            choices = _choices(question)
            if not choices:
                errors.append(f"question {idx}: type {qtype} has no choices")
            if has_default:
                defaults = [d for d in question['default'].splitlines() if d.strip()]
                if qtype == 'multiplechoice' and len(defaults) > 1:
                    errors.append(f"question {idx}: multiplechoice takes one default")
                if any(d not in choices for d in defaults):
                    errors.append(f"question {idx}: default {question['default']!r} is not among the choices")
        elif has_default and not any(e.startswith(f"question {idx}: min") or e.startswith(f"question {idx}: max")
                                     for e in errors):
            errors.extend(_default_errors(idx, question))
        if has_default and isinstance(question['default'], str) and question['default'].startswith('$encrypted$'):
            errors.append(f"question {idx}: $encrypted$ is reserved for password defaults AWX already holds")
        if question['required'] and qtype in _TEXT_TYPES and question.get('default', '') == '' and \
                _limit(question, 'min') in (None, 0):
            errors.append(f"question {idx}: a required {qtype} question without a default needs min >= 1,"
                          " or an empty answer passes")
    return errors
