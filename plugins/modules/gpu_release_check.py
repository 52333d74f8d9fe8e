#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: gpu_release_check
short_description: Prove that a host's GPUs no longer hold a model's memory
version_added: 0.1.0
description:
  - Waits until no compute process of the model remains on the host's GPUs (and, optionally, until
    each GPU's used memory is under a threshold), then reports every GPU and holder it saw.
  - Fails when the GPUs are not released by the deadline, naming each remaining holder's PID, name,
    GPU and memory, and saying what to do.
  - Which processes count is chosen with O(pids), O(unit) and O(process_name); any of them matching
    makes a process count. With none of them, every compute process counts.
  - Can SIGKILL processes left over in a stopped unit's cgroup (O(kill_orphans)); it never signals
    any other process.
  - A host with no GPU (no vendor tool and no C(/dev/nvidia<N>) or C(/dev/kfd) device) is released;
    RV(gpus) is empty and RV(msg) says no GPU was found.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details:
      - Polls as usual, which changes nothing. With O(kill_orphans=true) it kills nothing and returns
        in RV(killed) the PIDs it would kill.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Only O(kill_orphans=true) changes anything; once the leftovers are gone a second run kills nothing.
options:
  backend:
    description:
      - Where GPU and process information comes from.
      - V(auto) uses V(nvidia-smi) when it is on the PATH (or O(nvidia_smi_path) is set), else V(nvml)
        when the C(pynvml) module imports and NVML initialises, else V(amd-smi) when it is on the PATH
        (or O(amd_smi_path) is set), else V(rocm-smi) when it is on the PATH (or O(rocm_smi_path) is set),
        else V(proc).
      - V(nvidia-smi) runs C(nvidia-smi --query-gpu) and C(--query-compute-apps) (CSV with a header line).
        The header must name every queried field; an output with other fields, or a line with fewer
        fields, is not read and the check fails with RV(state=unknown).
      - V(nvml) uses the C(pynvml) bindings (Python package C(nvidia-ml-py)).
      - V(amd-smi) (ROCm 6.4 and later, where it replaces rocm-smi) runs C(amd-smi metric --mem-usage --json)
        and C(amd-smi process --json), the processes of each GPU with their VRAM. amd-smi may list a process
        under every GPU. Run by a user other than root it cannot see other users' processes, so an empty
        process list then fails the check (RV(state=unknown)); set C(become=true) on the task.
      - V(rocm-smi) runs C(rocm-smi --showmeminfo vram --showproductname --showuniqueid --json) for the GPUs
        and C(rocm-smi --showpids) for the processes (its JSON cannot say "no process", so the text table, or its
        C(No KFD PIDs currently running), is what counts). rocm-smi does not say which GPU a process uses, so
        O(gpus) cannot exclude its processes.
      - V(proc) scans C(/proc/*/fd) for processes with C(/dev/nvidia*) or C(/dev/kfd) open. It needs no
        vendor tool but cannot see memory amounts, so it cannot check O(max_memory_used_mib). Root is
        needed to read other users' processes; processes it cannot read make the check fail rather
        than pass. It skips C(nvidia-persistenced), C(nv-hostengine), C(nvidia-powerd),
        C(nv-fabricmanager) and C(nvidia-smi), which keep the devices open without holding a model.
    type: str
    default: auto
    choices: [auto, nvidia-smi, nvml, amd-smi, rocm-smi, proc]
  nvidia_smi_path:
    description:
      - Path of C(nvidia-smi) when it is not on the PATH. A path with a NUL byte is refused.
    type: path
  amd_smi_path:
    description:
      - Path of C(amd-smi) when it is not on the PATH (usually C(/opt/rocm/bin/amd-smi)). A path with a NUL byte is refused.
    type: path
  rocm_smi_path:
    description:
      - Path of C(rocm-smi) when it is not on the PATH. A path with a NUL byte is refused.
    type: path
  pids:
    description:
      - PIDs whose GPU use counts.
    type: list
    elements: int
  unit:
    description:
      - A systemd unit whose processes count. That is every process in its cgroup, found in
        C(/proc/*/cgroup) on each poll (so workers that outlived the main process are included), plus the
        unit's last main process (C(ExecMainPID)) when C(systemctl) is available.
      - A name without a unit-type suffix gets C(.service), so V(model-server@llama) means
        C(model-server@llama.service).
      - It is passed to C(systemctl) after C(--), so a name starting with C(-) is never read as an option; a
        name with a NUL byte, another control character or a C(/) is refused.
    type: str
  process_name:
    description:
      - A Python regular expression searched in each holder's process name as the GPU tool reports
        it, in C(/proc/<pid>/comm), and in its command line (so V(vllm) matches C(python3 -m vllm.entrypoints...)).
    type: str
  gpus:
    description:
      - Only look at these GPUs, given as indices (V(0)) or UUIDs (C(GPU-...), or C(MIG-...) for a MIG device).
      - A GPU named here that the host does not have fails the task, unless the host has no GPU at all.
    type: list
    elements: str
  no_processes:
    description:
      - Require that no matching compute process remains on the selected GPUs.
    type: bool
    default: true
  max_memory_used_mib:
    description:
      - Also require each selected GPU's used memory to be at most this many MiB. A GPU whose used
        memory is unknown fails this check.
      - Required when O(no_processes=false).
    type: int
  timeout:
    description:
      - Seconds to wait for the release. The check runs at once and then every O(poll_interval)
        seconds until it passes or the deadline is reached. V(0) checks once.
      - A finite number of 0 or more; NaN, infinities and negative numbers are refused.
      - With O(kill_orphans=true), a second wait of the same length follows the kill.
    type: float
    default: 30
  poll_interval:
    description:
      - Seconds between checks. A finite number more than 0; V(0), negative numbers, NaN and infinities are refused.
    type: float
    default: 1
  kill_orphans:
    description:
      - When the GPUs are not released by the deadline, send SIGKILL to the matching holders that are
        in O(unit)'s cgroup, then wait again. Every PID's cgroup is read again just before it is
        killed; processes outside the unit's cgroup are never signalled, and are reported instead.
      - Requires O(unit).
    type: bool
    default: false
notes:
  - Each C(nvidia-smi), C(amd-smi) and C(rocm-smi) command gets 60 seconds, enforced with C(timeout) (coreutils)
    when it is on the PATH and otherwise by the module itself (SIGTERM, then SIGKILL 5 seconds later); one that
    takes longer fails the task with RV(error_kind=tool_timeout) and RV(state=unknown).
  - What cannot be known is never reported as released. A GPU tool that fails, hangs or prints something
    unreadable, a C(/proc) that cannot be listed, processes whose open files cannot be read, or a memory
    threshold on a GPU that does not report its memory, fail the task with RV(state=unknown).
  - Processes are counted per GPU tool. V(nvidia-smi) and V(nvml) list compute processes only, so
    graphics clients (an X server) do not count; under CUDA MPS the MPS server is the holder.
  - On GPUs in MIG mode, nvidia-smi reports the parent GPU's UUID for each process; a MIG device UUID,
    when reported, is mapped to its GPU with C(nvidia-smi -L).
  - In the V(proc) backend the GPU index is the device minor number of C(/dev/nvidia<N>), which
    usually, but not always, equals nvidia-smi's index.
requirements:
  - Linux.
  - One of C(nvidia-smi), the Python package C(nvidia-ml-py) (for V(nvml)), C(amd-smi), C(rocm-smi), or none (V(proc)).
seealso:
  - module: modelops.shutdown.unit_stop
'''

EXAMPLES = r'''
- name: Wait until the llama server's processes have left the GPUs, killing leftovers of its unit
  modelops.shutdown.gpu_release_check:
    unit: model-server@llama.service
    timeout: 60
    kill_orphans: true
  become: true

- name: Require GPUs 0 and 1 to be empty of vLLM processes and almost free of memory
  modelops.shutdown.gpu_release_check:
    process_name: vllm
    gpus: [0, 1]
    max_memory_used_mib: 1024
    timeout: 120
    poll_interval: 2

- name: On an AMD host with ROCm 6.4 or later, read the processes with amd-smi
  modelops.shutdown.gpu_release_check:
    backend: amd-smi
    amd_smi_path: /opt/rocm/bin/amd-smi
    unit: model-server@llama.service
  become: true

- name: On a host without a vendor tool, scan /proc for processes holding the GPU devices
  modelops.shutdown.gpu_release_check:
    backend: proc
    pids: "{{ model_server_pids }}"
  become: true
  register: gpu_check

- name: Show what held the GPUs
  ansible.builtin.debug:
    var: gpu_check.holders
'''

RETURN = r'''
released:
  description: Whether the GPUs were released (no matching process, memory under the threshold).
  returned: always
  type: bool
  sample: true
state:
  description:
    - V(released) the GPUs were proven released (RV(released=true)).
    - V(held) a matching process (or a GPU's used memory over O(max_memory_used_mib)) was seen at the last check.
    - V(unknown) whether the GPUs are released could not be found out, for example a GPU tool failed, hung or
      printed unreadable output (see RV(error_kind)), processes could not be read (RV(unreadable_pids)), a GPU
      did not report its memory, or the options were refused. Never counts as released.
  returned: always
  type: str
  sample: released
gpus:
  description:
    - The selected GPUs, each with every compute process on it. Empty on a host without GPUs.
    - For the V(proc) backend C(name) is the device path, and C(uuid) and memory are null.
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-00000000-0000-0000-0000-000000000000
      name: NVIDIA H100 80GB HBM3
      memory_used_mib: 59
      memory_total_mib: 81559
      holders:
        - {pid: 21180, name: /root/tools/memhog, used_mib: 2296, unit: null, matched: true}
  contains:
    index:
      description: GPU index (null for C(/dev/kfd) in the V(proc) backend).
      type: int
      returned: always
      sample: 0
    uuid:
      description: GPU UUID, or the AMD unique ID; null when unknown (always for V(amd-smi)).
      type: str
      returned: always
      sample: GPU-00000000-0000-0000-0000-000000000000
    name:
      description: Product name (device path for the V(proc) backend, PCI address for V(amd-smi)).
      type: str
      returned: always
      sample: NVIDIA H100 80GB HBM3
    memory_used_mib:
      description: Used memory in MiB; null when the tool cannot tell.
      type: int
      returned: always
      sample: 59
    memory_total_mib:
      description: Total memory in MiB; null when the tool cannot tell.
      type: int
      returned: always
      sample: 81559
    holders:
      description: Every compute process on this GPU.
      type: list
      elements: dict
      returned: always
      sample: [{pid: 21180, name: /root/tools/memhog, used_mib: 2296, unit: null, matched: true}]
      contains:
        pid:
          description: Process ID.
          type: int
          returned: always
          sample: 21180
        name:
          description: Process name as the GPU tool reports it.
          type: str
          returned: always
          sample: /root/tools/memhog
        used_mib:
          description: GPU memory the process uses in MiB; null when reported as C([N/A]) or unknown.
          type: int
          returned: always
          sample: 2296
        unit:
          description: O(unit) when the process is in its cgroup, else null.
          type: str
          returned: always
          sample: model-server@llama.service
        matched:
          description: Whether the process counts (matches O(pids), O(unit) or O(process_name), or no filter was given).
          type: bool
          returned: always
          sample: true
holders:
  description: The matching processes still on the selected GPUs at the last check.
  returned: always
  type: list
  elements: dict
  sample:
    - {pid: 21198, name: ./gpu_burn, used_mib: 7484, gpu_uuid: GPU-00000000-0000-0000-0000-000000000000, gpu_index: 0, unit: null}
  contains:
    pid:
      description: Process ID.
      type: int
      returned: always
      sample: 21198
    name:
      description: Process name as the GPU tool reports it.
      type: str
      returned: always
      sample: ./gpu_burn
    used_mib:
      description: GPU memory in MiB; null when unknown.
      type: int
      returned: always
      sample: 7484
    gpu_uuid:
      description: UUID of the GPU (or MIG device) as the tool reported it; null when unknown.
      type: str
      returned: always
      sample: GPU-00000000-0000-0000-0000-000000000000
    gpu_index:
      description: Index of the GPU; null when the tool does not say (rocm-smi, C(/dev/nvidiactl)).
      type: int
      returned: always
      sample: 0
    unit:
      description: O(unit) when the process is in its cgroup, else null.
      type: str
      returned: always
      sample: null
killed:
  description:
    - PIDs sent SIGKILL because of O(kill_orphans). In check mode, the PIDs that would have been.
  returned: always
  type: list
  elements: int
  sample: [48211]
unreadable_pids:
  description: Matching processes whose open files could not be read (V(proc) backend without root).
  returned: always
  type: list
  elements: int
  sample: []
backend:
  description: The backend used.
  returned: always
  type: str
  sample: nvidia-smi
waited_seconds:
  description: Seconds spent waiting, both waits included when O(kill_orphans) killed something.
  returned: always
  type: float
  sample: 4.02
error_kind:
  description:
    - Why a GPU tool could not be used, when that is what failed the task. For example V(driver_not_loaded)
      (nvidia-smi rc 9), V(library_not_found) (rc 12), V(gpu_lost) (rc 15), V(permission) (rc 4),
      V(unparseable) (the output did not match what was asked), V(tool_missing), V(tool_timeout) (the tool did
      not finish in time).
  returned: when a GPU tool failed
  type: str
  sample: driver_not_loaded
started_at:
  description: When the check started, in epoch seconds (wall clock, 3 decimals).
  returned: always
  type: float
  sample: 1714564800.25
finished_at:
  description: When the check finished, in epoch seconds (wall clock, 3 decimals).
  returned: always
  type: float
  sample: 1714564804.271
msg:
  description: What was found, or why the GPUs are not released and what to do.
  returned: always
  type: str
  sample: GPUs released on gpu-host-3 after 4.0s (1 GPU checked)
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._gpu_check import (
    MODULE_KWARGS,
    GpuReleaseChecker,
    argument_spec,
)


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(argument_spec()), supports_check_mode=True, **MODULE_KWARGS)
    checker = GpuReleaseChecker(module.run_command, module.get_bin_path, module.check_mode, module.warn)
    result, failure_msg = checker.run(module.params)
    if failure_msg is not None:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
