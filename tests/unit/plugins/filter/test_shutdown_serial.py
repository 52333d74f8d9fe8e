# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""shutdown_serial: every form a user or an AWX survey gives, and every wrong one refused by name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.filter.shutdown_serial import shutdown_serial


@pytest.mark.parametrize("value, expected", [
    (1, [1]), (3.0, [3]), ("2", [2]), ("25%", ["25%"]), (" 25 % ", ["25%"]), ([1, "25%"], [1, "25%"]),
    ('[1, "25%"]', [1, "25%"]), ("1,25%", [1, "25%"]), ("[1, 2]", [1, 2]), (["1", "2"], [1, 2]), ("100%", ["100%"]),
])
def test_accepted_forms(value, expected):
    assert shutdown_serial(value) == expected


@pytest.mark.parametrize("value, needle", [
    (0, "0 is not a batch size (it must be at least 1)"),
    ([0, -1], "shutdown_serial[0]: 0 is not a batch size"),
    (["abc"], "'abc' is not a batch size"),
    ("abc", "'abc' is not a batch size"),
    ([], "the list is empty"),
    ("[1, 2", "is not a list Ansible can read"),
    (1.5, "1.5 is not a batch size"),
    (True, "True is not a batch size"),
    ("0%", "a percentage must be 1% to 100%"),
    ("150%", "a percentage must be 1% to 100%"),
    ({"a": 1}, "is not a batch size"),
    (None, "None is not a batch size"),
])
def test_refused_with_the_item_and_what_was_expected(value, needle):
    with pytest.raises(AnsibleFilterError) as info:
        shutdown_serial(value)
    assert needle in str(info.value)
    assert "expected a positive whole number" in str(info.value)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4), max_leaves=8))
def test_any_input_is_a_valid_serial_or_a_filter_error(value):
    try:
        result = shutdown_serial(value)
    except AnsibleFilterError:
        return
    assert result and all((isinstance(i, int) and not isinstance(i, bool) and i >= 1)
                          or (isinstance(i, str) and i.endswith('%') and 1 <= int(i[:-1]) <= 100) for i in result)
