# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter C(shutdown_serial): a batch-size setting, checked and made into what the C(serial) keyword takes.

The documentation is in the sidecar file C(shutdown_serial.yml).
"""

from __future__ import annotations

import json
import re

from ansible.errors import AnsibleFilterError

_PERCENT = re.compile(r'^\s*([0-9]+)\s*%\s*$')
_COUNT = re.compile(r'^\s*([0-9]+)\s*$')
EXPECTED = ('a positive whole number (2), a percentage of the targets (25%), or a list of them ([1, "25%"]; '
            'as text also 1,25%)')


def _item(value, where):
    """One batch size: a positive int, or a percentage string from 1% to 100%."""
    if isinstance(value, bool):
        raise AnsibleFilterError('%s: %r is not a batch size; expected %s' % (where, value, EXPECTED))
    if isinstance(value, int):
        if value < 1:
            raise AnsibleFilterError('%s: %d is not a batch size (it must be at least 1); expected %s'
                                     % (where, value, EXPECTED))
        return value
    if isinstance(value, float):
        if value.is_integer() and value >= 1:
            return int(value)
        raise AnsibleFilterError('%s: %r is not a batch size; expected %s' % (where, value, EXPECTED))
    if isinstance(value, str):
        match = _COUNT.match(value)
        if match:
            return _item(int(match.group(1)), where)
        match = _PERCENT.match(value)
        if match:
            percent = int(match.group(1))
            if not 1 <= percent <= 100:
                raise AnsibleFilterError('%s: %r is not a batch size (a percentage must be 1%% to 100%%); expected %s'
                                         % (where, value, EXPECTED))
            return '%d%%' % percent
    raise AnsibleFilterError('%s: %r is not a batch size; expected %s' % (where, value, EXPECTED))


def shutdown_serial(value, where='shutdown_serial'):
    """The batch sizes as a list of positive ints and 'N%' strings; AnsibleFilterError naming what was expected."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith('['):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise AnsibleFilterError('%s: %r is not a list Ansible can read (%s); expected %s'
                                         % (where, value, exc, EXPECTED))
        elif ',' in text:
            value = text.split(',')
        else:
            value = [text]
    elif isinstance(value, (int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError('%s: %r is not a batch size; expected %s' % (where, value, EXPECTED))
    if not value:
        raise AnsibleFilterError('%s: the list is empty; expected %s' % (where, EXPECTED))
    return [_item(item, '%s[%d]' % (where, index) if len(value) > 1 else where) for index, item in enumerate(value)]


class FilterModule(object):
    """modelops.shutdown batch-size filter."""

    def filters(self):
        return {
            'shutdown_serial': shutdown_serial,
        }
