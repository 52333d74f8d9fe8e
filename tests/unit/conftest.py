# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every unit test: host_shutdown's host lock lives in the test's own directory, never in this machine's /run
(the property tests move it into their sandbox themselves, with every other host path)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _host_lock_in_tmp(request, tmp_path, monkeypatch):
    if '/property/' in str(request.node.path):
        return
    try:
        from ansible_collections.modelops.shutdown.plugins.module_utils import _host_shutdown
    except ImportError:
        return  # run without the collection on the path (make units sets it): nothing to redirect
    monkeypatch.setattr(_host_shutdown, 'DEFAULT_LOCK_PATH', str(tmp_path / 'modelops-shutdown.lock'))
