# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""disruption_budget on results shaped like a looped model_health_state state=query task (loop over subelements)."""

from __future__ import annotations

import copy

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.filter.disruption_budget import (
    FilterModule,
    disruption_budget,
)

LB1 = {'name': 'lb1', 'delegate_to': 'lb1.example.net',
       'haproxy': {'socket': '/run/haproxy/admin.sock', 'backend': 'models', 'server': None}}
LB2 = {'delegate_to': 'lb2.example.net',
       'haproxy': {'host': '10.0.9.2', 'port': 9999, 'backend': 'models', 'server': None}}
CONSUL = {'name': 'consul-dc1',
          'consul': {'url': 'http://127.0.0.1:8500', 'service_id': None, 'reason': 'rollout'}}
FLAG = {'file': {'path': '/var/lib/model-server/maintenance'}}


def member(host):
    """A member as hostvars gives it (subelements keeps the whole dict as item[0])."""
    return {
        'inventory_hostname': host,
        'ansible_host': '10.0.0.%d' % (sum(map(ord, host)) % 250),
        'group_names': ['model_servers'],
        'drain_load_balancers': [LB1],
    }


def haproxy_raw(backend, server, status, admin='ready'):
    admin_state = {'ready': 0, 'drain': 8, 'maint': 1}[admin]
    return {
        'backend': backend, 'server': server, 'status': status, 'check_status': 'L7OK',
        'check_desc': 'Layer7 check passed', 'weight': 1, 'scur': 0, 'qcur': 0, 'addr': '10.0.0.7:8000',
        'admin_source': 'show servers state', 'admin_state': admin_state, 'admin_state_name': admin,
        'op_state': 2, 'op_state_name': 'running', 'admin_flags': [],
    }


def query(host, entry, state='ready', status='UP', failed_msg=None, server=None, skipped=False):
    """One element of register.results for the pair (host, entry)."""
    entry = copy.deepcopy(entry)
    if 'haproxy' in entry:
        entry['haproxy']['server'] = server or host
    if 'consul' in entry:
        entry['consul']['service_id'] = 'model-%s' % host
    item = [member(host), entry]
    if skipped:
        return {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False',
                'false_condition': 'inventory_hostname in ansible_play_hosts', 'item': item, 'ansible_loop_var': 'item'}
    result = {
        'changed': False,
        'previous_state': state,
        'state': state,
        'in_flight': 0,
        'target': 'HAProxy server models/%s (HAProxy runtime socket /run/haproxy/admin.sock)' % host,
        'verified': {'ok': None, 'skipped': True, 'waited_seconds': 0.0, 'checks': [],
                     'detail': 'state=query only reads the state'},
        'invocation': {'module_args': {'state': 'query'}},
        'failed': False,
        'item': item,
        'ansible_loop_var': 'item',
        '_ansible_item_label': entry.get('name', 'lb'),
    }
    if 'haproxy' in entry:
        admin = {'ready': 'ready', 'draining': 'drain', 'maintenance': 'maint'}.get(state, 'ready')
        result['raw'] = haproxy_raw(entry['haproxy']['backend'], entry['haproxy']['server'], status, admin)
    elif 'consul' in entry:
        maint = state == 'maintenance'
        result['raw'] = {'maintenance': maint, 'maintenance_check': None, 'service_checks': []}
    elif 'http' in entry:
        result['raw'] = {'reported': state, 'response': {'state': state, 'in_flight': 0}}
    else:
        result['raw'] = {'path': entry['file']['path'], 'exists': state != 'ready', 'mode': None, 'mtime': None,
                         'content': None}
    if failed_msg:
        result = {'failed': True, 'msg': failed_msg, 'changed': False, 'item': item, 'ansible_loop_var': 'item'}
    return result


def pool_of(records, name):
    matches = [r for r in records if r['pool'] == name]
    assert len(matches) == 1, records
    return matches[0]


def four_up():
    return [query('gpu-%d' % i, LB1) for i in range(1, 5)]


def test_registered_as_filter():
    assert FilterModule().filters()['disruption_budget'] is disruption_budget


def test_batch_within_budget_counts_and_message():
    records = disruption_budget(four_up(), ['gpu-1'], '50%')
    assert records == [{
        'pool': 'lb1/models', 'size': 4, 'available': 4, 'taking': 1, 'remaining': 3, 'required': 2,
        'min_available': '50%', 'ok': True,
        'members': {'gpu-1': 'UP', 'gpu-2': 'UP', 'gpu-3': 'UP', 'gpu-4': 'UP'},
        'batch_members': ['gpu-1'], 'taking_members': ['gpu-1'], 'unknown': [],
        'message': 'pool lb1/models: taking out 1 of 4 available servers (gpu-1) leaves 3 UP, '
                   'at or above min_available=2 (50% of 4)',
    }]


def test_refused_pool_message_names_pool_and_numbers():
    results = four_up()
    results[3] = query('gpu-4', LB1, state='maintenance', status='MAINT')
    record = disruption_budget(results, ['gpu-1', 'gpu-2'], '50%')[0]
    assert (record['size'], record['available'], record['taking'], record['remaining'], record['required']) == (4, 3, 2, 1, 2)
    assert record['ok'] is False
    assert record['members']['gpu-4'] == 'MAINT'
    assert record['message'] == ('pool lb1/models: taking out 2 of 3 available servers (gpu-1, gpu-2) would leave 1 UP, '
                                 'below min_available=2 (50% of 4)')


@pytest.mark.parametrize('status, available', [
    ('UP', True),
    ('UP 1/3', True),       # going down, still serving
    ('no check', True),
    ('DOWN', False),        # admin ready but failing its health check
    ('DOWN 1/2', False),    # going up, not serving yet
    ('NOLB', False),
    ('DRAIN', False),
    ('MAINT', False),
    ('MAINT(via)', False),
])
def test_haproxy_status_decides_availability_of_ready_servers(status, available):
    results = [query('gpu-1', LB1, status=status), query('gpu-2', LB1)]
    record = disruption_budget(results, [], 1)[0]
    assert record['available'] == (2 if available else 1)
    assert record['members']['gpu-1'] == status


@pytest.mark.parametrize('state, status, shown', [
    ('draining', 'DRAIN', 'DRAIN'),
    ('maintenance', 'MAINT', 'MAINT'),
    ('draining', 'UP', 'UP (draining)'),
])
def test_state_other_than_ready_is_not_available(state, status, shown):
    results = [query('gpu-1', LB1, state=state, status=status), query('gpu-2', LB1)]
    record = disruption_budget(results, ['gpu-1'], 1)[0]
    assert record['available'] == 1
    assert record['taking'] == 0
    assert record['batch_members'] == ['gpu-1']
    assert record['taking_members'] == []
    assert record['members']['gpu-1'] == shown
    assert record['ok'] is True


def test_failed_query_is_unavailable_and_listed_unknown():
    results = four_up()
    results[2] = query('gpu-3', LB1, failed_msg='HAProxy runtime API /run/haproxy/admin.sock: connection refused')
    record = disruption_budget(results, ['gpu-1', 'gpu-2'], 2)[0]
    assert record['available'] == 3
    assert record['remaining'] == 1
    assert record['ok'] is False
    assert record['unknown'] == ['gpu-3']
    assert record['members']['gpu-3'] == 'query failed: HAProxy runtime API /run/haproxy/admin.sock: connection refused'
    assert record['message'].startswith('pool lb1/models: taking out 2 of 3 available servers (gpu-1, gpu-2) would '
                                        'leave 1 UP, below min_available=2;')
    assert 'gpu-3' in record['message']


def test_failed_query_under_failed_when_false_is_unknown_with_its_reason():
    # roles/rollout registers the query with failed_when: false: a module failure then has failed=false, no state.
    results = [query('gpu-1', LB1), query('gpu-2', LB1)]
    results[1] = {'changed': False, 'failed': False, 'failed_when_result': False,
                  'msg': 'HAProxy runtime API /run/haproxy/admin.sock:\n connection refused',
                  'item': results[1]['item'], 'ansible_loop_var': 'item'}
    record = disruption_budget(results, ['gpu-1'], 1)[0]
    assert record['available'] == 1
    assert record['unknown'] == ['gpu-2']
    assert record['members']['gpu-2'] == 'unknown: HAProxy runtime API /run/haproxy/admin.sock: connection refused'
    assert record['ok'] is False


def test_skipped_and_unknown_state_are_not_available():
    results = [query('gpu-1', LB1), query('gpu-2', LB1, skipped=True), query('gpu-3', LB1, state='unknown', status='UP')]
    record = disruption_budget(results, [], 1)[0]
    assert record['size'] == 3
    assert record['available'] == 1
    assert record['unknown'] == ['gpu-2', 'gpu-3']
    assert record['members']['gpu-2'] == 'skipped'


def test_empty_haproxy_status_is_not_available():
    results = [query('gpu-1', LB1, status=''), query('gpu-2', LB1)]
    record = disruption_budget(results, [], 0)[0]
    assert record['available'] == 1
    assert record['members']['gpu-1'] == 'no status (ready)'


def test_taking_nothing_is_ok_even_below_minimum():
    results = [query('gpu-1', LB1), query('gpu-2', LB1, state='maintenance', status='MAINT'),
               query('gpu-3', LB1, status='DOWN')]
    record = disruption_budget(results, ['gpu-2', 'gpu-3', 'other-host'], 2)[0]
    assert record['available'] == 1
    assert record['taking'] == 0
    assert record['remaining'] == 1
    assert record['required'] == 2
    assert record['ok'] is True
    assert record['batch_members'] == ['gpu-2', 'gpu-3']
    assert 'already below min_available=2' in record['message']


def test_pools_per_load_balancer_backend_and_kind_sorted():
    results = []
    for host in ('gpu-1', 'gpu-2'):
        results.append(query(host, LB1))
        results.append(query(host, LB2))
        results.append(query(host, CONSUL))
        results.append(query(host, FLAG, state='maintenance' if host == 'gpu-2' else 'ready'))
    results.append(query('gpu-3', dict(LB1, haproxy=dict(LB1['haproxy'], backend='embeddings'))))
    records = disruption_budget(results, ['gpu-1'], 1)
    assert [r['pool'] for r in records] == [
        'consul-dc1/model-gpu-1', 'consul-dc1/model-gpu-2', 'lb', 'lb1/embeddings', 'lb1/models', 'lb2.example.net/models']
    flag = pool_of(records, 'lb')
    assert flag['members'] == {'gpu-1': 'ready', 'gpu-2': 'maintenance'}
    assert (flag['available'], flag['taking'], flag['remaining'], flag['ok']) == (1, 1, 0, False)
    assert flag['message'] == ('pool lb: taking out 1 of 1 available servers (gpu-1) would leave 0 available, '
                               'below min_available=1')
    assert pool_of(records, 'lb2.example.net/models')['ok'] is True
    assert pool_of(records, 'lb1/embeddings')['batch_members'] == []
    # Each Consul service id is its own pool: taking its only instance out breaks a min_available of 1.
    assert pool_of(records, 'consul-dc1/model-gpu-1')['ok'] is False
    assert pool_of(records, 'consul-dc1/model-gpu-2')['ok'] is True


def test_http_entry_pool_is_lb_name():
    entry = {'name': 'admin-api', 'http': {'url': 'http://127.0.0.1:8000/admin/state'}}
    results = [query('gpu-1', entry), query('gpu-2', entry)]
    record = disruption_budget(results, ['gpu-2'], '1')[0]
    assert record['pool'] == 'admin-api'
    assert record['ok'] is True
    assert record['min_available'] == '1'


@pytest.mark.parametrize('value, required', [
    (0, 0), (3, 3), ('3', 3), (' 2 ', 2), ('0%', 0), ('1%', 1), ('25%', 1), ('26%', 2), ('50%', 2), ('51%', 3),
    ('75%', 3), ('100%', 4),
])
def test_min_available_forms_and_rounding_up(value, required):
    assert disruption_budget(four_up(), [], value)[0]['required'] == required


def test_percentage_of_pool_counts_unavailable_members_in_size():
    results = [query('gpu-%d' % i, LB1) for i in range(1, 6)]
    results[4] = query('gpu-5', LB1, status='DOWN')
    record = disruption_budget(results, ['gpu-1', 'gpu-2'], '60%')[0]
    assert record['required'] == 3
    assert record['remaining'] == 2
    assert record['ok'] is False
    assert record['message'].endswith('below min_available=3 (60% of 5)')


@pytest.mark.parametrize('value', [
    -1, '-1', '50.5%', '150%', 'half', '', '%', 1.5, 2.0, True, None, ['2'],
])
def test_bad_min_available_raises_naming_value(value):
    with pytest.raises(AnsibleFilterError) as err:
        disruption_budget(four_up(), ['gpu-1'], value)
    assert 'min_available' in str(err.value)
    assert repr(value) in str(err.value)


def test_per_pool_min_available_with_default():
    results = four_up() + [query('gpu-%d' % i, LB2) for i in range(1, 5)]
    records = disruption_budget(results, ['gpu-1', 'gpu-2'], {'lb1/models': 3, 'default': '50%'})
    lb1 = pool_of(records, 'lb1/models')
    lb2 = pool_of(records, 'lb2.example.net/models')
    assert (lb1['required'], lb1['min_available'], lb1['ok']) == (3, 3, False)
    assert (lb2['required'], lb2['min_available'], lb2['ok']) == (2, '50%', True)
    assert lb1['message'].endswith('would leave 2 UP, below min_available=3')


def test_per_pool_min_available_without_default_for_a_pool_raises():
    results = four_up() + [query('gpu-1', LB2)]
    with pytest.raises(AnsibleFilterError, match=r'no value for pool lb2\.example\.net/models and no "default"'):
        disruption_budget(results, [], {'lb1/models': 2})


def test_per_pool_min_available_unknown_pool_raises():
    with pytest.raises(AnsibleFilterError, match=r'not in the query results: lb9/models; the pools are: lb1/models'):
        disruption_budget(four_up(), [], {'lb9/models': 2, 'default': 1})


def test_per_pool_bad_value_names_pool():
    with pytest.raises(AnsibleFilterError, match=r"min_available\['lb1/models'\].*'lots'"):
        disruption_budget(four_up(), [], {'lb1/models': 'lots'})


def test_item_as_tuple_custom_loop_var_and_registered_dict():
    results = four_up()
    results[0]['item'] = tuple(results[0]['item'])
    pair = results[1].pop('item')
    results[1]['ansible_loop_var'] = 'pair'
    results[1]['pair'] = pair
    registered = {'changed': False, 'msg': 'All items completed', 'results': results}
    record = disruption_budget(registered, ['gpu-1', 'gpu-2'], 2)[0]
    assert record['taking_members'] == ['gpu-1', 'gpu-2']
    assert record['ok'] is True


def test_member_given_as_host_name():
    results = four_up()
    results[0]['item'][0] = 'gpu-1'
    assert disruption_budget(results, 'gpu-1', 3)[0]['taking_members'] == ['gpu-1']


def test_host_with_two_servers_in_one_pool_counts_each():
    results = [query('gpu-1', LB1, server='gpu-1-a'), query('gpu-1', LB1, server='gpu-1-b'),
               query('gpu-2', LB1), query('gpu-3', LB1)]
    record = disruption_budget(results, ['gpu-1'], 2)[0]
    assert record['size'] == 4
    assert record['taking_members'] == ['gpu-1 (gpu-1-a)', 'gpu-1 (gpu-1-b)']
    assert (record['remaining'], record['ok']) == (2, True)


def test_same_server_queried_twice_counts_once_and_worst_answer_wins():
    results = four_up() + [query('gpu-1', LB1, status='DOWN')]
    record = disruption_budget(results, [], 1)[0]
    assert record['size'] == 4
    assert record['available'] == 3
    assert record['members']['gpu-1'] == 'DOWN'


def test_empty_results_give_no_pool():
    assert disruption_budget([], ['gpu-1'], '50%') == []


@pytest.mark.parametrize('results, match', [
    (None, r'expected the results list .* got None'),
    ('gpu-1', r'expected the results list .* got \'gpu-1\''),
    ([42], r'query result 0 must be a dict'),
    ([{'state': 'ready'}], r'query result 0: expected item to be a \[pool member, load balancer entry\] pair'),
    ([{'state': 'ready', 'item': [{'inventory_hostname': 'gpu-1'}]}], r'pair'),
    ([{'state': 'ready', 'item': [{'name': 'gpu-1'}, LB1]}], r'item\[0\]\) must be a dict with inventory_hostname'),
    ([{'state': 'ready', 'item': ['gpu-1', 'lb1']}], r'load balancer entry \(item\[1\]\) must be a dict'),
    ([{'state': 'ready', 'item': ['gpu-1', {'name': 'lb1'}]}], r"entry 'lb1' must have exactly one of .* it has none"),
    ([{'state': 'ready', 'item': ['gpu-1', dict(LB1, consul={'service_id': 'x'})]}], r'it has haproxy, consul'),
    ([{'state': 'ready', 'item': ['gpu-1', {'name': 'lb1', 'haproxy': {'server': 'gpu-1'}}]}], r"'lb1' has no backend"),
    ([{'state': 'ready', 'item': ['gpu-1', {'consul': {'url': 'http://c:8500'}}]}], r"'lb' has no service_id"),
])
def test_malformed_results_raise_clear_errors(results, match):
    with pytest.raises(AnsibleFilterError, match=match):
        disruption_budget(results, [], 1)


@pytest.mark.parametrize('batch', [None, 3, ['gpu-1', 2], {'gpu-1': True}])
def test_bad_batch_raises(batch):
    with pytest.raises(AnsibleFilterError, match=r'batch must be a list of inventory host names, got'):
        disruption_budget(four_up(), batch, 1)
