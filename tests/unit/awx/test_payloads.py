# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job template, workflow and node definitions under awx/, and the awx.awx tasks that use them, fit the
awx.awx modules' argument specs (read from the installed awx.awx collection, as the module builds them)."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = pathlib.Path(__file__).resolve().parents[3]
AWX = REPO / 'awx'
try:
    import ansible_collections.awx.awx as _awx_pkg
    AWX_MODULES = pathlib.Path(list(_awx_pkg.__path__)[0]) / 'plugins' / 'modules'
except ImportError:  # pragma: no cover - the dev venv's ansible package carries awx.awx
    AWX_MODULES = None

pytestmark = pytest.mark.skipif(AWX_MODULES is None, reason='awx.awx is not installed')


def _literal(node):
    """Evaluate the dict(...)/list/constant expressions an awx.awx argument_spec is written with."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    return ast.literal_eval(node)


def module_spec(name):
    """(argument_spec, documented options) of awx.awx.<name>: the spec main() builds, the options DOCUMENTATION gives."""
    tree = ast.parse((AWX_MODULES / f'{name}.py').read_text())
    doc = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == 'DOCUMENTATION')
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'main')
    spec = next(_literal(n.value) for n in ast.walk(main)
                if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', None) == 'argument_spec')
    return spec, yaml.safe_load(doc)['options']


def _doc_to_spec(options):
    spec = {}
    for key, opt in options.items():
        entry = {k: opt[k] for k in ('type', 'elements', 'choices', 'required', 'aliases') if k in opt}
        if 'suboptions' in opt:
            entry['options'] = _doc_to_spec(opt['suboptions'])
        spec[key] = entry
    return spec


def validate(module, params):
    spec, doc = module_spec(module)
    # Sub-options awx.awx documents but does not put into the spec (approval_node, workflow_nodes).
    for key, entry in spec.items():
        if entry.get('type') in ('dict', 'list') and 'suboptions' in doc.get(key, {}):
            entry['options'] = _doc_to_spec(doc[key]['suboptions'])
    result = ArgumentSpecValidator(spec).validate(params)
    return [str(e) for e in result.errors]


JOB_TEMPLATES = sorted(p.stem for p in (AWX / 'job_templates').glob('*.json'))


@pytest.mark.parametrize('name', JOB_TEMPLATES)
def test_job_template_payload_fits_the_job_template_module(name):
    body = json.loads((AWX / 'job_templates' / f'{name}.json').read_text())
    spec, _doc = module_spec('job_template')
    # The API body's fields are the module's options (ids in the body, names in the module).
    assert set(body) <= set(spec), set(body) - set(spec)
    for ref in ('inventory', 'project', 'execution_environment'):
        assert body[ref] is None, f'{ref} is filled in at creation (docs/awx.md), never a fixed id'
    assert (REPO / body['playbook']).is_file()
    params = dict(body, inventory='fleet', project='modelops', execution_environment='ee', organization='Default',
                  extra_vars=yaml.safe_load(body['extra_vars']) or {})
    survey = AWX / 'surveys' / f'{name}.json'
    if survey.exists():
        params['survey_spec'] = json.loads(survey.read_text())
    assert body['survey_enabled'] == survey.exists()
    assert validate('job_template', params) == []


def test_workflow_payload_fits_the_workflow_module():
    body = json.loads((AWX / 'workflows' / 'retire.json').read_text())
    spec, _doc = module_spec('workflow_job_template')
    assert set(body) <= set(spec), set(body) - set(spec)
    params = dict(body, organization='Default', inventory='fleet', extra_vars=yaml.safe_load(body['extra_vars']) or {},
                  survey_spec=json.loads((AWX / 'surveys' / 'retire_workflow.json').read_text()))
    assert validate('workflow_job_template', params) == []
    assert body['allow_simultaneous'] is False  # the eligibility job rewrites the approval node of the template


def _nodes():
    return json.loads((AWX / 'workflows' / 'retire_nodes.json').read_text())


@pytest.mark.parametrize('node', _nodes(), ids=lambda n: n['identifier'])
def test_workflow_node_fits_the_node_module(node):
    params = dict(node, workflow_job_template='wf', state='present')
    assert validate('workflow_job_template_node', params) == []


def test_workflow_graph_is_eligibility_approval_retire_verify():
    nodes = {n['identifier']: n for n in _nodes()}
    order, current = [], 'eligibility'
    while current:
        order.append(current)
        current = (nodes[current].get('success_nodes') or [None])[0]
    assert order == ['eligibility', 'approval', 'retire', 'verify']
    titles = {json.loads(p.read_text())['name']: p.stem for p in (AWX / 'job_templates').glob('*.json')}
    playbook = {i: json.loads((AWX / 'job_templates' / f"{titles[n['unified_job_template']]}.json").read_text())['playbook']
                for i, n in nodes.items() if 'unified_job_template' in n}
    assert playbook == {'eligibility': 'playbooks/evaluate.yml', 'retire': 'playbooks/retire.yml',
                        'verify': 'awx/playbooks/verify_retirement.yml'}
    # The eligibility node names the approval node it rewrites, as the retire role's argument spec wants it.
    target = nodes['eligibility']['extra_data']['retire_awx_approval_node']
    assert target['identifier'] == 'approval'
    assert target['name'] == nodes['approval']['approval_node']['name']
    assert target['workflow_template'] == json.loads((AWX / 'workflows' / 'retire.json').read_text())['name']
    specs = yaml.safe_load((REPO / 'roles/retire/meta/argument_specs.yml').read_text())['argument_specs']
    option = specs['awx_approval']['options']['retire_awx_approval_node']
    assert ArgumentSpecValidator({'retire_awx_approval_node': option}).validate(
        {'retire_awx_approval_node': target}).errors.messages == []
    # The approval node's job template takes the node's extra_data only when it prompts for variables.
    evaluate = json.loads((AWX / 'job_templates' / 'evaluate.json').read_text())
    assert evaluate['ask_variables_on_launch'] is True


def _awx_tasks(path):
    found = []

    def walk(items):
        for item in items or []:
            for key in ('tasks', 'block', 'rescue', 'always'):
                walk(item.get(key))
            for key, args in item.items():
                if key.startswith('awx.awx.'):
                    found.append((key.split('.')[-1], args))
    walk(yaml.safe_load(path.read_text()))
    return found


@pytest.mark.parametrize('path', ['playbooks/awx_setup.yml', 'roles/retire/tasks/awx_approval.yml'])
def test_awx_tasks_use_only_real_options(path):
    tasks = _awx_tasks(REPO / path)
    assert tasks
    for module, args in tasks:
        spec, _doc = module_spec(module)
        names = set(spec) | {a for e in spec.values() for a in e.get('aliases', [])}
        assert set(args) <= names, (module, set(args) - names)
        missing = [k for k, e in spec.items() if e.get('required') and k not in args]
        assert missing == [], (module, missing)


@pytest.mark.parametrize('playbook', ['playbooks/awx_setup.yml', 'awx/playbooks/verify_retirement.yml'])
def test_playbook_syntax(playbook):
    exe = pathlib.Path(sys.executable).parent / 'ansible-playbook'
    if not exe.exists():
        pytest.skip('ansible-playbook is not next to this Python')
    run = subprocess.run([str(exe), '--syntax-check', '-i', 'localhost,', str(REPO / playbook)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
