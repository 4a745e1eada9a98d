"""Each test of the models room keeps its feature files in its own folder, except tests that share a real worker."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _feature_dir(request, settings, tmp_path):
    """Point FEATURE_DIR at the test's own folder; a worker process reads the configured one, so those tests keep it."""
    if request.node.get_closest_marker("worker") is None:
        settings.FEATURE_DIR = tmp_path / "features"
