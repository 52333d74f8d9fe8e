# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The rollout's journal option, shared by the modules that write to it through their action plugins.
    DOCUMENTATION = r'''
options:
  journal:
    description:
      - The rollout's journal on the controller, as M(modelops.shutdown.shutdown_journal) with
        O(modelops.shutdown.shutdown_journal#module:state=open) returns it
        (RV(modelops.shutdown.shutdown_journal#module:journal)). C(playbooks/shutdown.yml) passes it to every task that
        changes anything.
      - Handled on the controller by the action plugin; a module run on a host never receives it. The modules that
        change load balancers or hosts append what is about to change to it, with fsync, before the module runs (a
        journal that cannot be written stops the change), and what changed after.
    type: dict
    suboptions:
      path:
        description: The journal file (JSON lines, one event per line).
        type: path
        required: true
      run:
        description: The run's id.
        type: str
        required: true
'''
