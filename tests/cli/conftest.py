"""CLI fixtures: the shared bundles, images, data sets and runs are in tests/conftest.py."""

from __future__ import annotations

import pytest
from helpers import single_torch_thread

_one_torch_thread = pytest.fixture(autouse=True, scope="session")(single_torch_thread)
