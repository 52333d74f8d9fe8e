# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter C(disruption_budget): would taking a batch out leave every pool at or above min_available?

The documentation is in the sidecar file C(disruption_budget.yml). The counting lives in
C(module_utils/_budget.py), which the C(lb_batch_state) module uses on the load balancer too.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.module_utils import _budget


def parse_min_available(value, where='min_available'):
    try:
        return _budget.parse_min_available(value, where)
    except _budget.BudgetError as exc:
        raise AnsibleFilterError(str(exc))


def disruption_budget(query_results, batch, min_available):
    """Check a batch against each pool's minimum of available members; one record per pool, sorted by pool."""
    try:
        return _budget.disruption_budget(query_results, batch, min_available)
    except _budget.BudgetError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """modelops.shutdown disruption budget filter."""

    def filters(self):
        return {
            'disruption_budget': disruption_budget,
        }
