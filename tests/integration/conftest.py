"""A cluster fixture: production instances behind nginx, stopped after each test."""

from __future__ import annotations

import pytest

from .cluster import Cluster, nginx_binary


@pytest.fixture
def cluster(tmp_path):
    """Two production instances behind nginx, all stopped (and their logs printed) after the test."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light; .ci/run does it)")
    cluster = Cluster(tmp_path, binary)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
        print(cluster.report())  # pytest shows it only when the test fails
