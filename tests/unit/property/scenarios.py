# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the module property tests share: the machine a run happens on and the checks every run gets.

Not a test module. C(Machine) gathers the stand-ins of C(hosts.py) on one C(fakes.World); C(check_run)
asserts the properties every module has:

1. main() ends in exit_json or fail_json (C(fakes.run_main) raises otherwise);
2. it sleeps no longer than its budget (its own timeout plus one poll interval and slack; no budget at all, only
   slack, when its timing options are invalid);
4. in check mode nothing that changes the host was run or sent (argv, HTTP methods, runtime API commands, signals)
   and the sandbox (flag files, drop-ins, SELinux config, files to remove) is as it was.

Property 3 (no C(drained)/C(released) without a read that showed zero) is checked by the tests that know their
sources.
"""

from __future__ import annotations

import ipaddress
import math
import os
import struct

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from hypothesis import event, note
from hypothesis.control import currently_in_test_context

from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts

SLACK_SECONDS = 1.0
TCP_HEADER = ('  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n')


def as_float(value):
    """C(value) as an Ansible C(type=float) option receives it (C('5') and C(True) convert), or None when Ansible
    refuses it."""
    if isinstance(value, float):
        return value
    result = ArgumentSpecValidator({'x': {'type': 'float'}}).validate({'x': value})
    return None if result.error_messages else result.validated_parameters['x']


def finite_seconds(value, minimum=0.0):
    """C(value), converted as Ansible does, when it is a usable number of seconds (finite, at least C(minimum)), else None."""
    value = as_float(value)
    if value is None or not math.isfinite(value) or value < minimum:
        return None
    return float(value)


def budget(*parts):
    """The most seconds a run may sleep: the sum of C(parts) (each a C((timeout, interval)) pair or a number) plus
    C(SLACK_SECONDS). A part whose timeout is not a usable number counts 0: the module must refuse it, not wait."""
    total = SLACK_SECONDS
    for part in parts:
        if isinstance(part, tuple):
            timeout, interval = part
            timeout = finite_seconds(timeout)
            if timeout is not None:
                total += timeout + (finite_seconds(interval) or 0.0)
        else:
            total += finite_seconds(part) or 0.0
    return total


def tcp_row(number, local, local_port, remote, remote_port, state):
    """One line of /proc/net/tcp (or tcp6) as a little-endian kernel prints it."""
    def hex_address(text):
        address = ipaddress.ip_address(text)
        packed = address.packed
        return ''.join('%08X' % struct.unpack('<I', packed[i:i + 4])[0] for i in range(0, len(packed), 4))
    return '%4d: %s:%04X %s:%04X %s 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 20 4 30 10 -1\n' % (
        number, hex_address(local), local_port, hex_address(remote), remote_port, state, 40000 + number)


def tcp_text(rows, ipv6=False):
    """The text of /proc/net/tcp for C(rows), each C((local, local_port, remote, remote_port, state))."""
    return TCP_HEADER + ''.join(tcp_row(i, *row) for i, row in enumerate(rows))


class Machine(object):
    """One host for one run: C(systemd), C(policy), C(gpu) answer commands; C(http), C(haproxy) the network."""

    def __init__(self, sandbox, systemd=None, policy=None, gpu=None, http=None, haproxy=None, bin_paths=None, missing=()):
        self.sandbox = sandbox
        self.systemd = systemd or hosts.FakeSystemd({}, dropin_dir=sandbox.path('run', 'systemd', 'system'))
        self.policy = policy or hosts.FakePolicyTools()
        self.gpu = gpu or hosts.FakeGpuTools()
        self.http = http or hosts.FakeHttp()
        self.haproxy = haproxy or hosts.FakeHAProxy()
        sandbox.write('etc/ufw/ufw.conf', self.policy.ufw_conf)
        self.world = fakes.World(
            sandbox,
            commands=fakes.CommandWorld(self.respond),
            http=fakes.HttpWorld(self.http.respond),
            haproxy=fakes.HAProxyWorld(self.haproxy.respond, self.haproxy.connect),
            bin_paths=fakes.default_bin_paths(sandbox, missing) if bin_paths is None else bin_paths)

    def respond(self, argv):
        inner = fakes.strip_timeout(argv)
        wrapped = None
        if len(inner) < len(argv):
            try:
                wrapped = float(argv[len(argv) - len(inner) - 1])
            except (TypeError, ValueError):
                wrapped = None
        if not inner:
            return 125, '', 'timeout: missing operand'
        tool = os.path.basename(str(inner[0]))
        if tool == 'systemctl':
            return self.systemd(inner)
        if tool in ('nvidia-smi', 'rocm-smi', 'amd-smi'):
            return self.gpu(inner, wrapped)
        return self.policy(inner)

    def run(self, module, args, check_mode=False, allowed_seconds=None, diff=False):
        """Run the module; check properties 1, 2 and 4 (see the module docstring); return the C(Outcome)."""
        before = self.sandbox.snapshot()
        clock = fakes.FakeClock(budget=allowed_seconds)
        outcome = fakes.run_main(module, args, self.world, check_mode=check_mode, diff=diff, clock=clock)
        if currently_in_test_context():
            note('result: %r' % (outcome.result,))
            note('commands: %r' % (self.world.commands.calls[:12],))
            event('cut short' if outcome.cut_short else 'failed' if outcome.failed else 'succeeded')
        if outcome.cut_short:
            return outcome
        if allowed_seconds is not None:
            assert clock.slept <= allowed_seconds, 'slept %.3f s, budget %.3f s' % (clock.slept, allowed_seconds)
        if check_mode:
            assert_untouched(self.world, before, self.sandbox.snapshot())
        return outcome


def assert_untouched(world, before, after):
    """Property 4: a check-mode run ran, sent and signalled nothing that changes the host, and left the sandbox alone."""
    mutations = world.mutations
    assert not any(mutations.values()), 'check mode changed the host: %r' % (mutations,)
    changed = sorted(set(before) ^ set(after) | set(k for k in before if k in after and before[k] != after[k]))
    assert not changed, 'check mode changed files: %r' % (changed,)


def sandbox_changes(before, after):
    return sorted(set(before) ^ set(after) | set(k for k in before if k in after and before[k] != after[k]))
