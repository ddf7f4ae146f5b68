"""A bad caller-directory edit on a real server: workers that restart keep the last good one, reloads stay off requests."""

import os
import signal
import time

import pytest
from helpers import ALICE, SERVICE, TOKEN, echoed, running_server, served_settings

from devtools.servers import http_status, wait_until
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server


def settled(path) -> None:
    """Date a file two seconds back, as one written a while ago (a reload skips a file still being written)."""
    then = time.time() - 2
    os.utime(path, (then, then))


def phone_for(server) -> Simulator:
    return Simulator(HttpTransport(), f"http://127.0.0.1:{server.port}/sms", token=TOKEN)


def kill_a_worker_and_wait_for_its_replacement(server, workers: int) -> None:
    wait_until(lambda: len(server.pids()) == 1 + workers, 30, f"{workers} workers")
    before = set(server.pids())
    os.kill(server.pids()[1], signal.SIGKILL)  # an OOM kill, a crash

    def replaced() -> bool:
        pids = set(server.pids()) if server.is_running() else set()
        return not server.is_running() or (len(pids) == 1 + workers and len(pids - before) == 1)

    wait_until(replaced, 30, "a replacement worker")
    assert server.is_running(), f"the server stopped:\n{server.log_tail()}"


def test_a_worker_killed_after_a_bad_edit_comes_back_with_the_last_good_directory(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    env = {**served_settings(2), "CALLERS_FILE": str(directory)}
    log = tmp_path / "server.log"
    with running_server("serve", env, log) as server:
        phone = phone_for(server)
        assert phone.send("hi", ALICE, SERVICE).text.split(":")[0].endswith(" Ada")
        wait_until(
            lambda: log.read_text().count("is plain http") == 2, 30, "both workers' boot"
        )  # its warning
        directory.write_text("number,name\n+15005550101,Ada\nnonsense,Bob\n+15005550102,\n")
        kill_a_worker_and_wait_for_its_replacement(server, workers=2)
        wait_until(lambda: "serving the last good copy" in log.read_text(), 30, "the new worker's warning")
        assert ":3: not a phone number" in log.read_text() and ":4: the name is empty" in log.read_text()
        replies = [phone.send(f"message {n}", ALICE, SERVICE).text for n in range(2, 12)]
        assert replies == [echoed(n, f"message {n}", name="Ada") for n in range(2, 12)]
        assert {http_status(server.port, "/readyz") for _ in range(10)} == {200}
        assert server.is_running()


def test_a_new_worker_gets_the_newest_good_version_its_predecessor_loaded(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    env = {**served_settings(1), "CALLERS_FILE": str(directory)}
    with running_server("serve", env, tmp_path / "server.log") as server:
        phone = phone_for(server)
        directory.write_text("number,name\n+15005550101,Grace\n")
        settled(directory)
        wait_until(
            lambda: " Grace: " in phone.send("hi", ALICE, SERVICE).text, 15, "the reload", interval=0.5
        )
        directory.write_text("number,name\nnonsense,Bob\n")
        kill_a_worker_and_wait_for_its_replacement(server, workers=1)
        assert phone.send("after the restart", ALICE, SERVICE).text.split(":")[0].endswith(" Grace")


def rows(name: str) -> str:
    """Return a 100,000-row directory whose numbers include ALICE's."""
    return "number,name\n" + "".join(f"+150055{i:05d},{name} {i}\n" for i in range(100_000))


def test_a_100000_row_reload_runs_beside_the_webhooks_not_inside_one(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text(rows("Person"))
    env = {**served_settings(1), "CALLERS_FILE": str(directory)}
    with running_server("serve", env, tmp_path / "server.log") as server:
        phone = phone_for(server)
        assert phone.send("hi", ALICE, SERVICE).text.split(":")[0].endswith(" Person 50101")
        directory.write_text(rows("Member"))
        settled(directory)
        latencies, reloaded_after = [], None
        started = time.perf_counter()
        while time.perf_counter() - started < 30:
            sent = time.perf_counter()
            reply = phone.send("hi", ALICE, SERVICE)
            latencies.append(time.perf_counter() - sent)
            if " Member 50101: " in reply.text:
                reloaded_after = time.perf_counter() - started
                break
    assert reloaded_after is not None, "the reload never finished"
    worst = max(latencies)
    print(
        f"\n100,000-row reload: new names after {reloaded_after:.1f} s; {len(latencies)} webhooks, worst {worst * 1000:.0f} ms"
    )
    assert worst < 0.5  # inside a request, the parse alone took over 2 s
