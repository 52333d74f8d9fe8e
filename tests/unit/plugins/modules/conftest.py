# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for module tests: run a module's C(main()) and get its result back.

Usage in any test file of this folder::

    from ansible_collections.modelops.shutdown.plugins.modules import my_module

    def test_something(run_module):
        result = run_module(my_module, {'state': 'query', ...})
        assert not result['failed']

    def test_bad_input(run_module):
        result = run_module(my_module, {...}, expect_failed=True)
        assert 'expected' in result['msg']

C(run_module(module, args, check_mode=False, diff=False, expect_failed=None, run_command=None,
bin_paths=None)) returns the dict the module gave to C(exit_json) or C(fail_json), with C(failed)
set (C(True) for C(fail_json)) and C(warnings) holding what the module passed to C(warn()).
Argument spec errors come back as a failure too (AnsibleModule calls C(fail_json) for them). A
module that returns from C(main()) without either, or raises, makes the test fail: no traceback
may reach a user. The result must be JSON serializable, as it would have to be for Ansible.

A module that runs commands gets C(run_command): a callable taking the argv list and returning
C((rc, stdout, stderr)) stands in for C(AnsibleModule.run_command) (see C(CommandReplay) in
C(tests/unit/plugins/helpers.py)). C(bin_paths) (a dict, program name to path) stands in for
what C(get_bin_path) finds on this machine: any other program is not found.
"""

from __future__ import annotations

import json

from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    AnsibleExitJson, AnsibleFailJson, exit_json, fail_json, module_args)


def run_module(module, args, check_mode=False, diff=False, expect_failed=None, run_command=None, bin_paths=None):
    """Run C(module.main()) with C(args) (a dict of module options); return the result dict."""
    args = module_args(args, check_mode, diff)
    warnings = []

    def _warn(self, warning):
        warnings.append(warning)

    def _run_command(_self, argv, *_args, **_kwargs):
        return run_command(argv)

    def _get_bin_path(_self, name, *_args, **_kwargs):
        return bin_paths.get(name)

    patches = {'exit_json': exit_json, 'fail_json': fail_json, 'warn': _warn}
    if run_command is not None:
        patches['run_command'] = _run_command
    if bin_paths is not None:
        patches['get_bin_path'] = _get_bin_path

    with patch_module_args(args):
        with mock.patch.multiple(basic.AnsibleModule, **patches):
            try:
                module.main()
            except AnsibleExitJson as exc:
                result = exc.result
                result['failed'] = False
            except AnsibleFailJson as exc:
                result = exc.result
            else:
                raise AssertionError('%s.main() returned without calling exit_json or fail_json' % module.__name__)
    result['warnings'] = warnings
    json.dumps(result)  # raises TypeError if the module returned something Ansible could not serialize
    if expect_failed is True and not result['failed']:
        raise AssertionError('expected the module to fail, it returned: %r' % (result,))
    if expect_failed is False and result['failed']:
        raise AssertionError('the module failed: %s' % result.get('msg'))
    return result


@pytest.fixture(name='run_module')
def run_module_fixture():
    """The C(run_module) helper as a fixture (conftest modules cannot be imported by tests)."""
    return run_module


@pytest.fixture
def module_exceptions():
    """C((AnsibleExitJson, AnsibleFailJson)) for tests that patch C(exit_json)/C(fail_json) themselves."""
    return AnsibleExitJson, AnsibleFailJson
