"""Each test of the models room keeps its feature and artifact files in its own folder, except tests that share a
real worker; `bearer` makes API headers for a role."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _feature_dir(request, settings, tmp_path):
    """Point FEATURE_DIR and ARTIFACT_DIR at the test's own folders; a worker reads the configured ones."""
    if request.node.get_closest_marker("worker") is None:
        settings.FEATURE_DIR = tmp_path / "features"
        settings.ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def bearer(users):
    """Return a function giving the Authorization header of a new API token for a role's user."""
    from labeling import services as labeling_services

    def make(role: str) -> dict[str, str]:
        _, raw = labeling_services.api_token_create(user=users[role])
        return {"authorization": f"Bearer {raw}"}

    return make
