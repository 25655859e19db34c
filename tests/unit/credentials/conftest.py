from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cred_helpers import Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path, store_url):
    """On both engines (``store_url``): the inventory must give the same answers on each."""
    c = Cluster(str(tmp_path / "data"), store_url)
    yield c
    c.close()
