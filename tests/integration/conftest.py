"""A cluster fixture: production instances behind nginx, stopped after each test."""

from __future__ import annotations

import pytest
from helpers import require

from .cluster import Cluster


@pytest.fixture
def cluster(tmp_path):
    """Two production instances behind nginx, all stopped (and their logs printed) after the test."""
    cluster = Cluster(tmp_path, require("nginx", "apt-get install nginx-light"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
        print(cluster.report())  # pytest shows it only when the test fails
