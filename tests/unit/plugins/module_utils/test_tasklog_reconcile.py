# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_tasklog.reconcile() driven directly, as a composing module would (the module's own tests cover the rest)."""

from __future__ import annotations

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.modelops.shutdown.plugins.module_utils._tasklog import argument_spec, reconcile
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import RequeueEndpoint

T0 = 1714564800.25
RESULT_KEYS = {'changed', 'state', 'incomplete', 'incomplete_count', 'truncated', 'started_count', 'completed_count', 'ended_count',
               'unmatched_count', 'started_before_since', 'other_events', 'malformed_lines', 'malformed_samples', 'paths',
               'would_resubmit', 'resubmitted'}


def write_log(tmp_path, records, name='gpu-07.tasks.jsonl'):
    path = str(tmp_path / name)
    with open(path, 'w', encoding='utf-8') as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + '\n')
    return path


def one_open(tmp_path):
    return write_log(tmp_path, [{'event': 'started', 'id': 'a', 'ts': T0}, {'event': 'started', 'id': 'b', 'ts': T0 + 1},
                                {'event': 'completed', 'id': 'b', 'ts': T0 + 2}])


def validated(**options):
    """Options validated and defaulted by the module's own spec, as AnsibleModule would."""
    result = ArgumentSpecValidator(argument_spec()).validate(options)
    assert not result.error_messages
    return result.validated_parameters


def test_result_is_the_modules_without_msg(tmp_path):
    path = one_open(tmp_path)
    result, failure = reconcile(validated(paths=[path]))
    assert failure is None and set(result) == RESULT_KEYS
    assert result['incomplete_count'] == 1 and result['incomplete'][0]['id'] == 'a'
    assert result['changed'] is False and result['would_resubmit'] == 0
    # Missing options take the spec defaults.
    assert reconcile({'paths': [path]}) == (result, None)


def test_failures_come_back_as_messages(tmp_path):
    path = one_open(tmp_path)
    missing = str(tmp_path / 'gone.jsonl')
    result, failure = reconcile({'paths': [path, missing]})
    assert missing in failure and 'missing_ok=true' in failure
    assert result['started_count'] == 2 and 'msg' not in result
    assert reconcile({'paths': [path], 'max_listed': -1})[1] == 'max_listed must be 0 or more, got -1'
    assert reconcile({'paths': []})[1] == 'paths must name at least one task log file'
    assert reconcile({'paths': None})[1] == 'paths must name at least one task log file'
    assert reconcile({'paths': [path], 'id_key': 'ts'})[1].startswith('invalid log format: ')


def test_malformed_lines_warn_or_fail(tmp_path):
    path = write_log(tmp_path, [{'event': 'started', 'id': 'a', 'ts': T0}, 'not json'])
    warnings = []
    result, failure = reconcile({'paths': [path]}, warn=warnings.append)
    assert failure is None and result['malformed_lines'] == 1
    assert len(warnings) == 1 and '1 malformed line(s)' in warnings[0] and '%s:2 (not JSON' % path in warnings[0]
    assert reconcile({'paths': [path]})[1] is None  # without warn the warning is dropped
    result, failure = reconcile({'paths': [path], 'fail_on_malformed': True})
    assert '1 malformed line(s)' in failure and 'more than max_malformed=0' in failure


def test_resubmit_suboptions_are_defaulted_and_check_mode_sends_nothing(tmp_path):
    path = one_open(tmp_path)
    with RequeueEndpoint() as server:
        result, failure = reconcile({'paths': [path], 'resubmit': {'url': server.url}}, check_mode=True)
        assert failure is None and result['changed'] and result['would_resubmit'] == 1 and result['resubmitted'] == []
        assert server.received == []

        result, failure = reconcile({'paths': [path], 'resubmit': {'url': server.url}})
        assert failure is None and result['changed']
        assert [(o['ids'], o['ok']) for o in result['resubmitted']] == [(['a'], True)]
        assert [(r['method'], r['body']) for r in server.received] == [('POST', [{'event': 'started', 'id': 'a', 'ts': T0}])]


def test_resubmit_failure_fails_or_warns(tmp_path):
    path = one_open(tmp_path)
    with RequeueEndpoint(statuses=(503,)) as server:
        result, failure = reconcile({'paths': [path], 'resubmit': {'url': server.url}})
        assert server.url in failure and 'HTTP 503' in failure and result['changed'] is False
        warnings = []
        result, failure = reconcile({'paths': [path], 'resubmit': {'url': server.url, 'on_error': 'warn'}},
                                    warn=warnings.append)
        assert failure is None and len(warnings) == 1 and 'HTTP 503' in warnings[0]
