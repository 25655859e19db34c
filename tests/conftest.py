"""Shared test fixtures: where the public fixtures live, a fresh data dir, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrail.testing import fixtures_dir

FIXTURES = fixtures_dir()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not FIXTURES.is_dir():
        skip = pytest.mark.skip(reason=f"public fixtures not found at {FIXTURES} (set KUBETRAIL_SHARED)")
        for item in items:
            if "needs_fixtures" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")
