"""/metrics across the production server's workers: every scrape sums them all, a restart loses nothing.

The workers' folder is one instance's: a second one started on it is refused, and the folder made for a
run when PROMETHEUS_MULTIPROC_DIR is not set is removed when the server stops.
"""

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, SERVICE, TOKEN, production_settings, running_server, served_settings
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import Server, free_port, wait_until
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

REPLIES, STOPS, FORGED = 70, 10, 20


def webhook_counts(port: int) -> dict[str, float]:
    status, _, body = HttpTransport().request("GET", f"http://127.0.0.1:{port}/metrics", {}, b"")
    assert status == 200
    text = body.decode()
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "responder_webhooks_total"
    }


def test_counts_are_exact_on_every_scrape_and_survive_a_worker_restart(tmp_path):
    with running_server("serve", served_settings(2), tmp_path / "server.log") as server:
        url = (
            f"http://127.0.0.1:{server.port}/sms"  # a new connection each time: the workers share the traffic
        )
        twilio = Simulator(HttpTransport(), url, token=TOKEN)
        forger = Simulator(HttpTransport(), url, token="f" * 32)  # not the service's token
        statuses = []
        for i in range(REPLIES + STOPS + FORGED):
            phone = forger if i >= REPLIES + STOPS else twilio
            params = phone.params("STOP" if i < STOPS else f"hello {i}", f"+1500555{i:04d}", SERVICE)
            statuses.append(phone.deliver(params).status)
        assert statuses.count(200) == REPLIES + STOPS and statuses.count(403) == FORGED

        expected = {"reply": REPLIES, "keyword_stop": STOPS, "refused_signature": FORGED}
        for _ in range(5):
            assert webhook_counts(server.port) == expected

        workers = server.pids()[1:]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGTERM)  # the master starts a new worker in its place
        wait_until(
            lambda: len(server.pids()[1:]) == 2 and workers[0] not in server.pids(), 20, "a new worker"
        )
        time.sleep(0.5)
        for _ in range(5):
            assert webhook_counts(server.port) == expected


def gunicorn(tmp_path: Path, name: str, **extra: str) -> Server:
    """Spawn `gunicorn -c gunicorn.conf.py` with production settings on a free port; return at once."""
    port = free_port()
    settings = production_settings(f"http://127.0.0.1:{port}", HOST="127.0.0.1", PORT=str(port), **extra)
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "WEB_CONCURRENCY": "2", **settings}
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py")]
    server = Server(command, env, port, tmp_path / f"{name}.log", tmp_path)
    server.spawn()
    return server


def send_hellos(server: Server, n: int) -> None:
    phone = Simulator(HttpTransport(), f"http://127.0.0.1:{server.port}/sms", token=TOKEN)
    for i in range(n):
        assert phone.send("hello", f"+1500555{i:04d}", SERVICE).status == 200


def test_a_second_instance_on_the_same_metrics_folder_is_refused_and_the_first_keeps_its_counts(tmp_path):
    folder = tmp_path / "metrics"
    first = gunicorn(tmp_path, "first", PROMETHEUS_MULTIPROC_DIR=str(folder))
    try:
        first.wait_healthy(timeout=20)
        send_hellos(first, 3)
        second = gunicorn(tmp_path, "second", PROMETHEUS_MULTIPROC_DIR=str(folder))
        assert second.wait_stopped(grace=20) == 2, "the second instance started"
        refusal = second.log_path.read_text()
        assert f"PROMETHEUS_MULTIPROC_DIR={folder} is in use by another running instance" in refusal
        assert "give each instance its own folder" in refusal
        assert webhook_counts(first.port) == {"reply": 3}
    finally:
        first.stop()


def test_the_metrics_folder_made_for_a_run_is_removed_when_the_server_stops(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = gunicorn(tmp_path, "server", TMPDIR=str(temp))  # no PROMETHEUS_MULTIPROC_DIR
    try:
        server.wait_healthy(timeout=20)
        send_hellos(server, 1)
        (made,) = temp.glob("sms-responder-metrics-*")
        assert {p.name.split("_")[0] for p in made.glob("*.db")} == {"counter", "histogram", "gauge"}
    finally:
        assert server.stop() == 0
    assert not made.exists(), "left behind: gunicorn.conf.py needs on_exit = metrics_folder.remove_if_ours"


KILLS = 20


def replaced(server, killed: int) -> bool:
    """Tell whether the killed worker is gone and another runs in its place (one look at the processes)."""
    pids = server.pids()
    return len(pids) == 3 and killed not in pids


def test_the_files_of_killed_workers_are_folded_so_the_folder_stays_small_and_no_count_goes_down(tmp_path):
    folder = tmp_path / "metrics"
    env = {**served_settings(2), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with running_server("serve", env, tmp_path / "server.log") as server:
        phone = Simulator(HttpTransport(), f"http://127.0.0.1:{server.port}/sms", token=TOKEN)
        sent, totals, files, scrapes = 0, [], [], []
        for kill in range(KILLS):
            for _ in range(5):
                assert phone.send("hello", f"+1500555{sent:04d}", SERVICE).status == 200
                sent += 1
            scraped = time.perf_counter()
            totals.append(sum(webhook_counts(server.port).values()))
            scrapes.append(time.perf_counter() - scraped)
            killed = server.pids()[1 + kill % 2]
            os.kill(killed, signal.SIGKILL)  # an OOM kill
            wait_until(lambda: replaced(server, killed), 20, "a new worker")  # noqa: B023
            totals.append(sum(webhook_counts(server.port).values()))
            files.append(sorted(p.name for p in folder.glob("*.db")))
        size = sum(p.stat().st_size for p in folder.glob("*.db"))
        _, _, body = HttpTransport().request("GET", f"http://127.0.0.1:{server.port}/metrics", {}, b"")
        timed = [
            s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name == "responder_webhook_duration_seconds_count"
        ]
    print(
        f"\nafter {KILLS} worker kills: {len(files[-1])} files, {size / 1024:.0f} KiB; "
        f"scrapes {min(scrapes) * 1000:.1f} to {max(scrapes) * 1000:.1f} ms"
    )
    assert totals == sorted(totals) and totals[-1] == sent == 5 * KILLS
    assert timed == [sent]  # the histograms were summed too
    assert all(len(names) <= 2 * 3 + 2 for names in files), files[-1]  # live workers' 3 each, 2 archives
    assert "counter_archive.db" in files[-1] and "histogram_archive.db" in files[-1]
