# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the unit tests of module_utils and modules (helpers to import are in helpers.py)."""

from __future__ import annotations

import shutil
import tempfile

import pytest


@pytest.fixture
def short_dir():
    """A new folder with a short path: unix socket paths are limited to ~108 bytes; pytest's tmp_path can be longer."""
    path = tempfile.mkdtemp(prefix='mo', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)
