# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter C(retirement_record): a retirement record read back, validated, with its rollback window computed.

The documentation is in the sidecar file C(retirement_record.yml). The record is checked by the module_utils
C(_retire_record), as the module C(retirement_record) checks it, so both accept and refuse the same documents.
"""

from __future__ import annotations

import math
import time

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_record as rr

_NAME = 'modelops.shutdown.retirement_record'


def _fail(message):
    raise AnsibleFilterError('%s: %s' % (_NAME, message))


def retirement_record(data, now=None):
    """The record in C(data) (JSON text or a dict), validated, plus C(window) at C(now) (epoch seconds, default now)."""
    if now is None:
        now = time.time()
    elif isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        _fail('now must be epoch seconds (a finite number), got %r' % (now,))
    try:
        if isinstance(data, (str, bytes)):
            record = rr.loads(data)
        elif isinstance(data, Mapping):
            record = rr.validate(data)
        else:
            _fail('the input must be the JSON text of a retirement record or the record as a dict, got %s'
                  % ('null' if data is None else type(data).__name__))
    except rr.RecordError as exc:
        _fail('not a valid retirement record (schema_version %s): %s' % (rr.SCHEMA_VERSION, exc))
    record['window'] = rr.window(record, float(now))
    return record


class FilterModule(object):
    """modelops.shutdown retirement record filter."""

    def filters(self):
        return {'retirement_record': retirement_record}
