# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_release_check's main() on generated options and GPU tool answers (nvidia-smi, rocm-smi, the /proc scan).

Properties: exit_json/fail_json only; sleeps at most timeout + poll_interval (twice with kill_orphans, which waits
again); released: true only after a read that showed no process (and memory under max_memory_used_mib when given):
a tool that failed, printed garbage, a shifted table, or rocm-smi JSON without its process section is no such read;
SIGKILL only for processes in the unit's cgroup, never in check mode.
"""

from __future__ import annotations

import pytest

from hypothesis import event, given, note
from hypothesis import strategies as st

from ansible_collections.modelops.shutdown.plugins.modules import gpu_release_check
from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts
from ansible_collections.modelops.shutdown.tests.unit.property.scenarios import Machine, budget
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import garbage_text, seconds, tampered, timing

UNIT = 'model-server@llama.service'
UNIT_PIDS = (4101, 4102)
OTHER_PIDS = (4200,)
BUSY_ROWS = [(4101, 'python3 -m vllm', 2296, hosts.ZERO_UUID), (4200, '/usr/bin/other', 512, hosts.ZERO_UUID)]


def apps_label(rc, text):
    """C(zero) when a compute-apps answer shows no process (empty, header only, "No running processes found")."""
    if rc != 0:
        return 'error'
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or 'no running processes found' in text.lower() or (len(lines) == 1 and 'pid' in lines[0] and 'process_name' in lines[0]):
        return 'zero'
    return 'busy'


def shifted(rows, position, piece):
    """nvidia-smi rows with a field inserted after C(position) in the first row (a column shift)."""
    lines = rows.splitlines()
    fields = lines[0].split(',')
    fields.insert(min(position, len(fields)), ' ' + piece)
    lines[0] = ','.join(fields)
    return '\n'.join(lines) + '\n'


GPU_ANSWERS = st.one_of(
    st.sampled_from((0, 59, 2296)).map(lambda used: (0, hosts.gpu_rows([(0, hosts.ZERO_UUID, 'NVIDIA H100 80GB HBM3', used, 81559)]), used)),
    st.just((6, 'No devices were found\n', 'nodevices')),
    st.just((9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 'error')),
    st.tuples(st.integers(1, 5), st.sampled_from(('0', '', '[N/A]'))).map(
        lambda p: (0, shifted(hosts.gpu_rows([(0, hosts.ZERO_UUID, 'NVIDIA H100 80GB HBM3', 2296, 81559)]), *p), 'shifted')),
    st.just((0, hosts.GPU_ALLFIELDS, 'allfields')),
)

APPS_ANSWERS = st.one_of(
    st.sampled_from(((0, '', None), (0, hosts.APPS_IDLE, None), (0, 'No running processes found\n', None),
                     (0, hosts.app_rows(BUSY_ROWS), None), (0, hosts.APPS_LOAD, None), (0, hosts.APPS_WIN, None),
                     (4, '', None), (9, '', None), (255, 'Unknown Error\n', None), (2, '', None))),
    st.tuples(st.integers(0, 4), st.sampled_from(('0', '', 'x'))).map(lambda p: (0, shifted(hosts.app_rows(BUSY_ROWS), *p), None)),
    garbage_text().map(lambda text: (0, text, None)),
).map(lambda answer: (answer[0], answer[1], apps_label(answer[0], answer[1])))

ROCM_ANSWERS = st.one_of(
    st.sampled_from(((0, hosts.ROCM_NO_PID, 'zero'), (0, hosts.ROCM_WITH_PID, 'busy'), (0, hosts.ROCM_NO_SYSTEM, 'none'),
                     (0, '', 'error'), (1, 'Permission denied\n', 'error'), (0, '{}', 'none'), (0, '{"card0": {}}', 'none'))),
    garbage_text().map(lambda text: (0, text, 'junk')),
)


@st.composite
def gpu_world(draw):
    return dict(gpu=draw(st.lists(GPU_ANSWERS, min_size=1, max_size=3)), apps=draw(st.lists(APPS_ANSWERS, min_size=1, max_size=3)),
                rocm=draw(st.lists(ROCM_ANSWERS, min_size=1, max_size=3)),
                proc_holders=draw(st.lists(st.sampled_from(UNIT_PIDS + OTHER_PIDS), max_size=3, unique=True)),
                dev_nodes=draw(st.lists(st.sampled_from(('nvidia0', 'nvidia1', 'nvidiactl', 'kfd')), max_size=3, unique=True)),
                hang_after=draw(st.sampled_from((None, None, None, 0, 2))),
                missing=draw(st.lists(st.sampled_from(('timeout', 'nvidia-smi', 'rocm-smi', 'systemctl')), max_size=2, unique=True)),
                unit_state=draw(st.sampled_from(('inactive', 'running', 'failed', 'not-found'))))


def build(sandbox, plan):
    for pid in UNIT_PIDS + OTHER_PIDS:
        cgroup = ('0::/system.slice/%s\n' % UNIT) if pid in UNIT_PIDS else '0::/user.slice/user-1000.slice\n'
        fds = ('/dev/nvidia0', '/dev/nvidiactl') if pid in plan['proc_holders'] else ('/dev/null',)
        sandbox.add_process(pid, cgroup=cgroup.encode(), comm=b'python3\n', cmdline=b'python3\0-m\0vllm\0', fds=fds)
    for node in plan['dev_nodes']:
        sandbox.write('dev/' + node, '')
    return Machine(sandbox, systemd=hosts.FakeSystemd({UNIT: plan['unit_state']}),
                   gpu=hosts.FakeGpuTools(gpu=plan['gpu'], apps=plan['apps'], rocm=plan['rocm'], hang_after=plan['hang_after']),
                   missing=plan['missing'])


@st.composite
def gpu_options(draw, filters=True):
    args = {'backend': draw(st.sampled_from(('auto', 'auto', 'nvidia-smi', 'nvidia-smi', 'rocm-smi', 'proc', 'amd-smi', 'nvml'))),
            'timeout': draw(timing(0, 3) if filters else seconds(0, 3)),
            'poll_interval': draw(timing(0.05, 1) if filters else seconds(0.05, 1))}
    if draw(st.booleans()):
        args['max_memory_used_mib'] = draw(st.sampled_from((0, 60, 1024, 100000)))
    if filters:
        for name, strategy in (('pids', st.lists(st.sampled_from(UNIT_PIDS + OTHER_PIDS + (1, -1, 0)), max_size=2)),
                               ('unit', st.sampled_from((UNIT, 'model-server@llama', '-.mount', 'nope.service'))),
                               ('process_name', st.sampled_from(('vllm', 'python', '(', '.*'))),
                               ('gpus', st.lists(st.sampled_from(('0', '1', hosts.ZERO_UUID, 'GPU-x', '')), max_size=2)),
                               ('kill_orphans', st.booleans()), ('no_processes', st.booleans())):
            if draw(st.booleans()):
                args[name] = draw(strategy)
        return draw(tampered(args, max_changes=1))
    return args


def run_check(args, plan, check_mode):
    waits = 2 if args.get('kill_orphans') else 1
    allowed = budget(*[(args.get('timeout', 30), args.get('poll_interval', 1))] * waits)
    with fakes.sandboxed() as sandbox:
        machine = build(sandbox, plan)
        outcome = machine.run(gpu_release_check, args, check_mode=check_mode, allowed_seconds=allowed)
    note('served: %r' % (machine.gpu.served,))
    return machine, outcome


@given(args=gpu_options(), data=st.data(), check_mode=st.booleans())
def test_gpu_release_check_any_options_end_cleanly_and_kill_only_the_units_leftovers(args, data, check_mode):
    """gpu_release_check on any options: exit_json/fail_json only; sleeps within timeout + poll_interval per wait;
    SIGKILL goes only to processes in the unit's cgroup, and never in check mode; no command changes the GPUs."""
    machine, outcome = run_check(args, data.draw(gpu_world()), check_mode)
    if outcome.cut_short:
        return
    killed = [pid for pid, sig in outcome.world.killed]
    assert set(killed) <= set(UNIT_PIDS), 'SIGKILL sent to processes outside unit %s: %r' % (UNIT, killed)
    assert not outcome.world.commands.mutating, outcome.world.commands.mutating


TRAPS = {
    # Answers that look like a free GPU to a careless reader, among some honest ones.
    'nvidia-smi': dict(
        gpu=st.one_of(st.tuples(st.integers(4, 4), st.sampled_from(('0', ' 0'))).map(
            lambda p: (0, shifted(hosts.gpu_rows([(0, hosts.ZERO_UUID, 'NVIDIA H100 80GB HBM3', 2296, 81559)]), *p), 'shifted')),
            GPU_ANSWERS),
        apps=st.one_of(st.sampled_from(((4, '', 'error'), (9, '', 'error'), (2, '', 'error'), (0, '', 'zero'))), APPS_ANSWERS)),
    'rocm-smi': dict(rocm=st.one_of(st.sampled_from(((0, hosts.ROCM_NO_SYSTEM, 'none'), (0, '{}', 'none'), (0, '{"card0": {}}', 'none'),
                                                     (0, '{"system": {}}', 'none'))), ROCM_ANSWERS)),
    'proc': dict(),
}


@pytest.mark.parametrize('backend', sorted(TRAPS))
@given(args=gpu_options(filters=False), data=st.data(), check_mode=st.booleans())
def test_gpu_release_check_reports_released_only_after_a_read_showing_no_process(backend, args, data, check_mode):
    """gpu_release_check with no process or GPU filter: released: true only after a read that showed no process (and
    every GPU at or under max_memory_used_mib when given) from the backend it used; a failed tool (rc != 0 with empty
    output), garbage, a shifted table (memory.used read from the wrong column), or rocm-smi JSON without process
    information never counts as one."""
    args['backend'] = backend
    plan = data.draw(gpu_world())
    for kind, strategy in TRAPS[backend].items():
        plan[kind] = data.draw(st.lists(strategy, min_size=1, max_size=3), label=kind)
    machine, outcome = run_check(args, plan, check_mode)
    if outcome.cut_short or not outcome.result.get('released'):
        return
    event('released')
    served = machine.gpu.served
    limit = args.get('max_memory_used_mib')
    if backend == 'nvidia-smi':
        memory_ok = limit is None or any(isinstance(used, int) and used <= limit for used in served['gpu'])
        zero = 'nodevices' in served['gpu'] or ('zero' in served['apps'] and memory_ok)
    elif backend == 'rocm-smi':
        zero = 'zero' in served['rocm']
    else:
        zero = not plan['proc_holders'] and limit is None
    assert zero, 'released: true with backend %s although no read showed the GPUs free: served %r' % (backend, served)
