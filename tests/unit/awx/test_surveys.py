# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The survey specs under awx/surveys pass AWX's rules (survey_rules.py), and ask only what the playbook reads."""

from __future__ import annotations

import copy
import importlib.util
import json
import pathlib
import re

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
SURVEYS = REPO / 'awx' / 'surveys'
_spec = importlib.util.spec_from_file_location('survey_rules', pathlib.Path(__file__).with_name('survey_rules.py'))
survey_rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(survey_rules)

# Which playbook each survey feeds.
PLAYBOOK_OF = {
    'shutdown': 'playbooks/shutdown.yml',
    'restore': 'playbooks/restore.yml',
    'retire': 'playbooks/retire.yml',
    'rollback': 'playbooks/rollback.yml',
    'retire_workflow': 'playbooks/retire.yml',
}


def _load(name):
    return json.loads((SURVEYS / f'{name}.json').read_text())


def test_every_survey_file_is_known():
    assert sorted(p.stem for p in SURVEYS.glob('*.json')) == sorted(PLAYBOOK_OF)


@pytest.mark.parametrize('name', sorted(PLAYBOOK_OF))
def test_survey_passes_awx_rules(name):
    assert survey_rules.survey_errors(_load(name)) == []


GOOD = {'name': 'n', 'description': 'd', 'spec': [
    {'question_name': 'q', 'variable': 'v', 'type': 'integer', 'required': True, 'min': 0, 'max': 10, 'default': 3}]}


@pytest.mark.parametrize('breakage, expected', [
    (lambda s: s.pop('description'), "field 'description' is missing"),
    (lambda s: s.update(spec=[]), "'spec' has no questions"),
    (lambda s: s['spec'][0].pop('required'), "question 0: 'required' is missing"),
    (lambda s: s['spec'][0].update(required='yes'), "question 0: 'required' must be a bool"),
    (lambda s: s['spec'][0].update(type='list'), "question 0: type 'list' is not one of"),
    (lambda s: s['spec'][0].update(default='3'), "question 0: default '3' must be a int"),
    (lambda s: s['spec'][0].update(default=True), "question 0: default True must be a int"),
    (lambda s: s['spec'][0].update(default=11), "question 0: default 11 is above max 10"),
    (lambda s: s['spec'][0].update(min='0'), "question 0: min must be an integer"),
    (lambda s: s['spec'].append(dict(s['spec'][0])), "question 1: variable 'v' is asked twice"),
    (lambda s: s['spec'][0].update(type='multiplechoice', default='a'), "question 0: type multiplechoice needs choices"),
    (lambda s: s['spec'][0].update(type='multiplechoice', choices=['a', 'b'], default='c'),
     "question 0: default 'c' is not among the choices"),
    (lambda s: s['spec'][0].update(type='multiplechoice', choices=['a', 'b'], default='a\nb'),
     "question 0: multiplechoice takes one default"),
    (lambda s: s['spec'][0].update(type='text', min=2, max=4, default='toolong'),
     "question 0: default 'toolong' is longer than max 4"),
    (lambda s: s['spec'][0].update(type='text', min=0, max=4, default=''),
     "question 0: a required text question without a default needs min >= 1"),
])
def test_broken_spec_is_rejected(breakage, expected):
    spec = copy.deepcopy(GOOD)
    assert survey_rules.survey_errors(spec) == []
    breakage(spec)
    errors = survey_rules.survey_errors(spec)
    assert any(e.startswith(expected) for e in errors), errors


def _texts_read_by(playbook):
    """The playbook, the playbooks it imports and the defaults and argument specs of the roles it uses."""
    texts, todo, seen = [], [REPO / playbook], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = path.read_text()
        texts.append(text)
        todo.extend(path.parent / m for m in re.findall(r'import_playbook:\s*(\S+\.yml)', text))
        for role in set(re.findall(r'modelops\.shutdown\.(\w+)', text)):
            for part in ('defaults/main.yml', 'meta/argument_specs.yml'):
                if (REPO / 'roles' / role / part).exists():
                    texts.append((REPO / 'roles' / role / part).read_text())
    return '\n'.join(texts)


@pytest.mark.parametrize('name', sorted(PLAYBOOK_OF))
def test_survey_asks_only_what_the_playbook_reads(name):
    text = _texts_read_by(PLAYBOOK_OF[name])
    for question in _load(name)['spec']:
        assert re.search(r'\b%s\b' % re.escape(question['variable']), text), (name, question['variable'])


def test_shutdown_survey_asks_only_the_variables_shutdown_yml_accepts():
    # shutdown.yml refuses any shutdown_* extra variable it does not know.
    first_play = yaml.safe_load((REPO / 'playbooks/shutdown.yml').read_text())[0]
    known = set(first_play['vars']['__shutdown_known'])
    asked = {q['variable'] for q in _load('shutdown')['spec']}
    assert asked <= known
    assert {'shutdown_targets', 'shutdown_serial', 'shutdown_max_fail_percentage'} <= asked


def test_shutdown_serial_is_text_and_its_default_parses():
    # AWX surveys have no list type: the canary list is text, which the shutdown_serial filter parses.
    from ansible_collections.modelops.shutdown.plugins.filter.shutdown_serial import FilterModule
    parse = FilterModule().filters()['shutdown_serial']
    question = next(q for q in _load('shutdown')['spec'] if q['variable'] == 'shutdown_serial')
    assert question['type'] == 'text'
    assert parse(question['default']) == [1]
    assert parse('1,25%') == [1, '25%']


def test_max_fail_percentage_is_an_integer_from_0_to_100():
    question = next(q for q in _load('shutdown')['spec'] if q['variable'] == 'shutdown_max_fail_percentage')
    assert (question['type'], question['min'], question['max']) == ('integer', 0, 100)
