# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-builder create` makes the execution environment's build context from the shipped definition,
offline, with this collection's source in it, and the collection's own EE metadata is what builder reads."""

from __future__ import annotations

import fnmatch
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
BUILDER = pathlib.Path(sys.executable).parent / 'ansible-builder'
DEFINITION = yaml.safe_load((REPO / 'execution-environment.yml').read_text())


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    if not BUILDER.exists():
        pytest.skip('ansible-builder is not next to this Python (requirements/dev.txt)')
    out = tmp_path_factory.mktemp('ee') / 'context'
    env = dict(os.environ, no_proxy='*', http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9')
    run = subprocess.run([str(BUILDER), 'create', '-f', str(REPO / 'execution-environment.yml'), '-c', str(out),
                          '--output-filename', 'Containerfile'], capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'No matches' not in run.stdout + run.stderr and 'does not exist' not in run.stdout + run.stderr
    return out


def test_containerfile_installs_the_pinned_core_and_the_collections(context):
    text = (context / 'Containerfile').read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in text  # overridable with --build-arg
    assert 'ARG PYCMD="/usr/bin/python3.11"' in text
    assert 'ansible-core==2.19.14' in text and 'ansible-runner==2.4.3' in text
    assert 'COPY _build /build' in text
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in text


def test_galaxy_requirements_are_this_collection_and_the_declared_ones(context):
    wanted = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())['collections']
    assert wanted[0] == {'name': '/build/modelops_shutdown', 'type': 'dir'}
    declared = [c for c in yaml.safe_load((REPO / 'requirements.yml').read_text())['collections'] if c['name'] != '.']
    assert [c for c in wanted if c['name'] in {d['name'] for d in declared}] == declared
    assert {c['name'] for c in wanted[1:]} - {d['name'] for d in declared} == {'awx.awx'}


def test_python_and_system_requirements(context):
    python = [line for line in (context / '_build' / 'requirements.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
    assert python == []  # the controller-side plugins import ansible-core, jinja2 and the stdlib only
    system = [line for line in (context / '_build' / 'bindep.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
    assert system == ['openssh-clients [platform:rpm]', 'openssh-client [platform:dpkg]']


def _shipped_top_level():
    """Top-level entries `ansible-galaxy collection build` ships: what git knows, less build_ignore."""
    ignore = yaml.safe_load((REPO / 'galaxy.yml').read_text())['build_ignore']
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    tops = {f.split('/')[0] for f in files if (REPO / f).exists()}
    return {t for t in tops if not any(fnmatch.fnmatch(t, pat) for pat in ignore) and not t.startswith('.')}


def test_context_holds_the_collection_as_it_ships(context):
    copied = {p.name for p in (context / '_build' / 'modelops_shutdown').iterdir()}
    assert copied == _shipped_top_level()
    assert (context / '_build/modelops_shutdown/plugins/modules/host_shutdown.py').is_file()
    assert (context / '_build/modelops_shutdown/meta/execution-environment.yml').is_file()


def test_ignored_and_shipped_paths():
    shipped = _shipped_top_level()
    assert {'awx', 'meta', 'plugins', 'roles', 'playbooks', 'docs'} <= shipped
    assert not {'tests', 'tools', 'molecule', 'requirements', 'execution-environment.yml', 'Makefile'} & shipped


def test_collection_meta_is_what_builder_reads():
    meta = yaml.safe_load((REPO / 'meta' / 'execution-environment.yml').read_text())
    assert meta['version'] == 1
    assert (REPO / meta['dependencies']['python']).is_file()
    assert (REPO / meta['dependencies']['system']).is_file()
    assert DEFINITION['dependencies']['python'] == meta['dependencies']['python']
    assert DEFINITION['dependencies']['system'] == meta['dependencies']['system']


def test_collection_python_needs_are_stdlib_ansible_and_jinja2():
    allowed = set(sys.stdlib_module_names) | {'ansible', 'ansible_collections', 'jinja2'}
    import ast
    for folder in ('action', 'filter', 'plugin_utils'):
        for path in (REPO / 'plugins' / folder).glob('*.py'):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for name in names:
                    assert name.split('.')[0] in allowed | {'__future__'}, (path.name, name)


def test_the_image_tag_follows_the_collection_version():
    version = yaml.safe_load((REPO / 'galaxy.yml').read_text())['version']
    definition = yaml.safe_load((REPO / 'execution-environment.yml').read_text())
    assert definition['options']['tags'] == ['modelops-shutdown-ee:%s' % version]
    assert 'modelops-shutdown-ee:%s' % version in (REPO / 'docs' / 'awx.md').read_text()
