# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example documents every public role variable, and sets none that no role reads."""

from __future__ import annotations

import pathlib
import re

import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE_PREFIXES = ("drain_", "stop_", "policy_", "verify_", "rollout_", "report_", "retire_")


def role_options():
    names = set()
    for spec in REPO.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names.update(entry.get("options") or {})
    return names


def example_text():
    return "\n".join(p.read_text() for p in sorted((REPO / "inventories" / "example").rglob("*.yml")))


def test_every_role_option_is_in_the_example_inventory():
    text = example_text()
    missing = sorted(name for name in role_options() if not re.search(r"\b%s\b" % re.escape(name), text))
    assert not missing, "document these in inventories/example/group_vars: %s" % ", ".join(missing)


def test_the_example_sets_no_role_variable_that_no_role_reads():
    options = role_options()
    set_names = set()
    for path in (REPO / "inventories" / "example").rglob("*.yml"):
        data = yaml.safe_load(path.read_text()) or {}
        if isinstance(data, dict):
            set_names.update(k for k in data if k.startswith(ROLE_PREFIXES))
    assert set_names, "the example group_vars set no role variable at all"
    assert sorted(set_names - options) == []
