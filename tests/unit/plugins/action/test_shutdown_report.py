"""shutdown_report action plugin: one task writes the JSON and Markdown records on the controller."""

from __future__ import annotations

import json
import os
import stat
from unittest import mock

from ansible.playbook.task import Task

from ansible_collections.modelops.shutdown.plugins.action.shutdown_report import ActionModule, render_markdown
from ansible_collections.modelops.shutdown.plugins.filter.rollout_report import rollout_report
from ansible_collections.modelops.shutdown.tests.unit.plugins.filter.test_rollout_report import REFUSAL, fleet


def run_action(args, check_mode=False):
    task = Task()
    task.args = args
    task.check_mode = check_mode
    action = ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    with mock.patch('ansible.plugins.action.ActionBase.run', return_value={}):
        return action.run(task_vars={})


def test_writes_json_and_markdown_atomically_with_their_modes(tmp_path):
    dest = tmp_path / 'reports' / 'nested'
    result = run_action({'hosts': fleet(), 'dest': str(dest), 'halted': True, 'halt_reason': REFUSAL})
    assert not result.get('failed'), result
    assert result['changed'] is False
    written = json.loads(open(result['paths']['json']).read())
    assert written == result['report'] and written['halted'] is True and written['mode'] == 'run'
    assert os.path.basename(result['paths']['json']) == 'shutdown-%s.json' % written['run_id']
    markdown = open(result['paths']['md']).read()
    assert 'HALTED' in markdown and 'gpu-1' in markdown and 'no task log' in markdown
    assert stat.S_IMODE(os.stat(result['paths']['json']).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) & 0o777 == 0o755
    assert sorted(os.listdir(str(dest))) == sorted(os.path.basename(p) for p in result['paths'].values())
    assert 'HALTED' in result['summary']


def test_check_mode_is_recorded_and_name_is_kept(tmp_path):
    result = run_action({'hosts': fleet(), 'dest': str(tmp_path), 'name': 'dry', 'markdown': False, 'html': False},
                        check_mode=True)
    assert result['paths'] == {'json': str(tmp_path / 'dry.json')}
    assert json.loads((tmp_path / 'dry.json').read_text())['mode'] == 'check'


def test_writes_the_html_page_with_the_load_panel(tmp_path):
    origin = rollout_report(fleet())['started_at']
    records = tmp_path / 'load.jsonl'
    records.write_text(''.join(json.dumps({'id': 'r%d' % i, 'start': origin + i * 0.5, 'latency': 0.1,
                                           'outcome': 'ok' if i % 4 else 'cut', 'status': 200, 'error': None}) + '\n'
                               for i in range(40)) + 'not json\n')
    result = run_action({'hosts': fleet(), 'dest': str(tmp_path / 'r'), 'name': 'run', 'load_records': str(records)})
    assert not result.get('failed'), result
    assert result['paths']['html'] == str(tmp_path / 'r' / 'run.html') and 'warnings' not in result
    page = open(result['paths']['html']).read()
    assert page.count('class="host-row"') == 6 and 'data-series="errors" data-total="10"' in page
    assert result['msg'].endswith('(and .md, .html)')
    assert stat.S_IMODE(os.stat(result['paths']['html']).st_mode) == 0o644


def test_missing_load_records_is_a_warning_and_a_page_without_load(tmp_path):
    result = run_action({'hosts': fleet(), 'dest': str(tmp_path), 'name': 'run',
                         'load_records': str(tmp_path / 'missing.jsonl')})
    assert not result.get('failed'), result
    assert len(result['warnings']) == 1 and 'missing.jsonl' in result['warnings'][0]
    assert 'tools/report_html.py' in result['warnings'][0]
    page = (tmp_path / 'run.html').read_text()
    assert 'class="host-row"' in page and 'load-series' not in page


def test_bad_input_fails_with_where_not_a_traceback(tmp_path):
    result = run_action({'hosts': {'gpu-1': {'marks': 'not a list'}}, 'dest': str(tmp_path)})
    assert result['failed'] is True and 'gpu-1.marks' in result['msg']
    result = run_action({'dest': str(tmp_path)})
    assert result['failed'] is True and 'hosts' in result['msg']


def test_unwritable_destination_says_what_to_do(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    result = run_action({'hosts': fleet(), 'dest': str(blocker / 'reports')})
    assert result['failed'] is True and 'report_dir' in result['msg']


def test_markdown_renders_with_plain_jinja():
    text = render_markdown(rollout_report(fleet()))
    assert text.startswith('# Model-serving shutdown rollout: run')
    assert '| 1 | gpu-2, gpu-1 |' in text


def test_the_runs_end_goes_into_its_journal_with_what_it_left_stranded(tmp_path):
    from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal
    path = str(tmp_path / 'run.jsonl')
    _journal.append(path, 'r1', 'run_started', targets=['gpu-1'])
    journal = {'path': path, 'run': 'r1'}
    result = run_action({'hosts': fleet(), 'dest': str(tmp_path / 'reports'), 'halted': True, 'halt_reason': REFUSAL,
                         'journal': journal, 'stranded': {'gpu-4': ['lb1']}})
    assert not result.get('failed'), result
    assert result['report']['journal'] == journal
    finished = _journal.read(path)[-1]
    assert (finished['event'], finished['status'], finished['stranded']) == ('run_finished', 'halted', {'gpu-4': ['lb1']})
    summary = _journal.summarize(_journal.read(path), path)
    assert summary['finished'] is True and summary['stranded'] == {'gpu-4': ['lb1']}
    # Check mode journals nothing.
    run_action({'hosts': fleet(), 'dest': str(tmp_path / 'reports'), 'journal': journal}, check_mode=True)
    assert len(_journal.read(path)) == 2


def test_a_journal_that_cannot_be_written_fails_the_report_task(tmp_path):
    result = run_action({'hosts': fleet(), 'dest': str(tmp_path / 'reports'),
                         'journal': {'path': str(tmp_path / 'gone' / 'run.jsonl'), 'run': 'r1'}})
    assert result['failed'] is True and 'cannot write the journal' in result['msg'], result
