"""Every model host runs its model-server unit and answers its health check."""

from __future__ import annotations

testinfra_hosts = ['ansible://dflt-m1', 'ansible://dflt-m2', 'ansible://dflt-m3']


def test_model_server_unit_active(host):
    unit = host.service('model-server@llama.service')
    assert unit.is_running
    health = host.run('curl -fsS http://127.0.0.1:8000/health')
    assert health.rc == 0, health.stderr
    assert '"ok"' in health.stdout


def test_fake_gpu_holds_the_servers_memory(host):
    out = host.check_output('nvidia-smi --query-compute-apps=pid,process_name,used_gpu_memory --format=csv,noheader,nounits')
    pid = host.check_output('systemctl show -p MainPID --value model-server@llama.service')
    assert pid in [line.split(', ')[0] for line in out.splitlines()]
