"""The benchmark's in-process stage table runs (a smoke run: the figures themselves live in `make bench`)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.server


def test_the_stage_table_times_every_stage_of_a_webhook(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.stages", "--rounds", "1", "--webhooks", "20", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    from bench.stages import STAGES

    assert list(figures["stages"]) == list(STAGES)
    assert all(us > 0 for us in figures["stages"].values()) and figures["total"] > figures["floor"] > 0
