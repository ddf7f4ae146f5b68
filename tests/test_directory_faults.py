"""A bad caller-directory edit on a real server: workers that restart keep the last good one, reloads stay off requests."""

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ALICE,
    REPO,
    SERVICE,
    TOKEN,
    echoed,
    probe_env,
    production_settings,
    running_server,
    served_settings,
)

from devtools.servers import Server, free_port, http_status, wait_until
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server


def settled(path) -> None:
    """Date a file two seconds back, as one written a while ago (a reload skips a file still being written)."""
    then = time.time() - 2
    os.utime(path, (then, then))


@contextlib.contextmanager
def serving_ada(tmp_path, workers: int):
    """Serve `make serve`'s server with a one-row directory naming ALICE Ada; yield (server, directory, log)."""
    directory, log = tmp_path / "callers.csv", tmp_path / "server.log"
    directory.write_text("number,name\n+15005550101,Ada\n")
    with running_server("serve", {**served_settings(workers), "CALLERS_FILE": str(directory)}, log) as server:
        yield server, directory, log


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
    with serving_ada(tmp_path, workers=2) as (server, directory, log):
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
    with serving_ada(tmp_path, workers=1) as (server, directory, _):
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


def peak_memory_mib(pid: int) -> float:
    """Return a process's peak resident memory (VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def refusal(tmp_path, callers_file, mode: str = "serve") -> tuple[int, list[str], float]:
    """Run `serve.py MODE` with this CALLERS_FILE; return its exit code, its stderr lines and the seconds taken."""
    env = {**served_settings(2), "PATH": os.environ["PATH"], "PORT": "9", "CALLERS_FILE": str(callers_file)}
    env["PUBLIC_URL"] = "http://127.0.0.1:9"
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, str(REPO / "serve.py"), mode],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve.py {mode} with CALLERS_FILE={callers_file} hung at start")
    return result.returncode, result.stderr.splitlines(), time.monotonic() - started


def csv_of_size(path, mib: float) -> None:
    """Write a valid directory of about `mib` MiB (about 43,000 rows a MiB)."""
    with path.open("w") as f:
        f.write("number,name\n")
        row = 0
        while f.tell() < mib * 2**20:
            f.write("".join(f"+1{2012000000 + n},Person {n}\n" for n in range(row, row + 10_000)))
            row += 10_000


def test_a_fifo_a_folder_or_an_oversized_directory_is_refused_at_start_in_one_line(tmp_path):
    fifo = tmp_path / "hung-mount.csv"
    os.mkfifo(fifo)  # a read waits for a writer forever, as on a hung network mount
    oversized = tmp_path / "everyone.csv"
    csv_of_size(oversized, 12)  # valid rows, but 3 times the limit
    expected = {
        fifo: "not a regular file (a FIFO, device or folder); CALLERS_FILE must name a CSV file",
        tmp_path: "not a regular file (a FIFO, device or folder)",
        oversized: "MiB, over the caller directory's limit of 4 MiB",
    }
    for (path, problem), mode in itertools.product(expected.items(), ["check", "serve"]):
        code, lines, seconds = refusal(tmp_path, path, mode)
        assert code == 2, lines
        assert [line for line in lines if "CALLERS_FILE" in line] == [
            next(line for line in lines if problem in line)
        ], lines
        assert seconds < 10
        print(f"\nserve.py {mode}, {path.name}: refused in {seconds:.1f} s: {lines[-1].strip()}")


def test_a_bad_number_is_explained_in_the_services_words_naming_file_and_line(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\ncall me,Bob\n")
    code, lines, _ = refusal(tmp_path, directory)
    assert code == 2
    assert (
        f"  - CALLERS_FILE: {directory}:3: not a phone number (it must be digits, with spaces, dots, "
        in lines[1]
    )
    assert not any("string supplied" in line or "(1)" in line for line in lines), lines


def test_an_oversized_edit_is_never_read_and_the_last_good_directory_keeps_serving(tmp_path):
    with serving_ada(tmp_path, workers=2) as (server, directory, log):
        phone = phone_for(server)
        workers = server.pids()[1:]
        before = {pid: peak_memory_mib(pid) for pid in workers}
        csv_of_size(directory, 12)  # a valid export of everyone: 12 MiB, 500,000 rows
        settled(directory)
        replies = []

        def warned() -> bool:  # each worker looks at the file when a webhook arrives 5 s after its last look
            replies.append(phone.send("again", ALICE, SERVICE).text)
            return log.read_text().count("over the caller directory's limit of 4 MiB") == 2

        wait_until(warned, 20, "both workers' warning", interval=0.2)
        assert all(" Ada: " in reply for reply in replies)
        assert server.pids()[1:] == workers, f"a worker died:\n{server.log_tail()}"
        after = {pid: peak_memory_mib(pid) for pid in workers}
        print(f"\nworkers' peak memory before the edit {before} MiB, after it {after} MiB")
        # A serving worker is about 38 MiB; one peaked at 60 in 1 of 6 runs (why is not yet known);
        # reading the file whole took 211.
        assert max(after.values()) < 100


def test_a_fifo_in_place_of_the_directory_blocks_no_worker_and_a_regular_file_recovers_it(tmp_path):
    with serving_ada(tmp_path, workers=2) as (server, directory, log):
        phone = Simulator(HttpTransport(timeout=3), f"http://127.0.0.1:{server.port}/sms", token=TOKEN)
        assert phone.send("hi", ALICE, SERVICE).text.split(":")[0].endswith(" Ada")
        directory.unlink()
        os.mkfifo(directory)
        settled(directory)
        deadline = time.monotonic() + 8  # past the 5 s recheck of both workers
        while time.monotonic() < deadline:
            assert phone.send("still there?", ALICE, SERVICE).text.split(":")[0].endswith(" Ada")
            assert http_status(server.port, "/healthz", timeout=3) == 200
            time.sleep(0.1)
        assert "not a regular file" in log.read_text()
        kill_a_worker_and_wait_for_its_replacement(server, workers=2)
        assert phone.send("after a restart", ALICE, SERVICE).text.split(":")[0].endswith(" Ada")

        directory.unlink()
        directory.write_text("number,name\n+15005550101,Grace\n")
        settled(directory)
        started = time.monotonic()
        wait_until(
            lambda: all(" Grace: " in phone.send("back?", ALICE, SERVICE).text for _ in range(4)),
            20,
            "the regular file's names on both workers",
            interval=0.5,
        )
        print(f"\nthe regular file put back served after {time.monotonic() - started:.1f} s")


def test_a_worker_that_hangs_while_it_boots_is_killed_after_the_timeout_and_replaced(tmp_path):
    env = {**served_settings(1), "GUNICORN_CMD_ARGS": "--timeout 3"}
    with running_server("serve", env, tmp_path / "server.log") as server:
        wait_until(lambda: len(server.pids()) == 2, 30, "the worker")
        (first,) = server.pids()[1:]
        os.kill(first, signal.SIGKILL)
        hung = []

        def stop_the_replacement_as_it_boots() -> bool:
            hung.extend(pid for pid in server.pids()[1:] if pid != first)
            if hung:
                os.kill(hung[0], signal.SIGSTOP)  # hangs before its first heartbeat, as in a blocking read
            return bool(hung)

        wait_until(stop_the_replacement_as_it_boots, 10, "a replacement worker", interval=0.001)
        stopped_at = time.monotonic()
        wait_until(lambda: hung[0] not in server.pids(), 15, "the hung worker to be killed")
        print(f"\nthe worker hung at boot was killed {time.monotonic() - stopped_at:.1f} s after it hung")
        server.wait_healthy(timeout=15)


MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")  # cgroup v1's memory controller


@contextlib.contextmanager
def memory_limit(mib: int):
    """Make a cgroup v1 memory group limited to `mib` MiB; yield its folder; remove it afterwards."""
    if os.geteuid() != 0 or not (MEMORY_CGROUPS / "cgroup.procs").exists():
        pytest.skip("needs root and cgroup v1's memory controller at /sys/fs/cgroup/memory")
    group = MEMORY_CGROUPS / f"sms-responder-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(mib * 2**20))
        yield group
    finally:
        wait_until(
            lambda: not (group / "cgroup.procs").read_text().strip(), 30, "the group's processes to exit"
        )
        group.rmdir()


def test_a_99_mib_edit_under_the_pods_256_mib_limit_kills_no_worker(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    port = free_port()
    env = {**production_settings(f"http://127.0.0.1:{port}"), "PATH": os.environ["PATH"], "HOST": "127.0.0.1"}
    env |= {"PORT": str(port), "WEB_CONCURRENCY": "2", "CALLERS_FILE": str(directory), **probe_env()}
    with memory_limit(256) as group:
        # The shell joins the group, then becomes `serve.py serve`: the master and its workers live in it.
        command = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" "$@"', sys.executable]
        server = Server(
            [*command, str(REPO / "serve.py"), "serve"], env, port, tmp_path / "server.log", tmp_path
        )
        try:
            server.start()
            workers = server.pids()[1:]
            phone = Simulator(HttpTransport(timeout=5), f"http://127.0.0.1:{port}/sms", token=TOKEN)
            replacement = tmp_path / "replacement"
            replacement.write_bytes(os.urandom(99 * 2**20))  # a stray upload in place of the directory
            replacement.replace(directory)
            settled(directory)
            end, replies = time.monotonic() + 12, []  # past both workers' 5 s recheck
            while time.monotonic() < end:
                replies.append(phone.send("hi", ALICE, SERVICE).text)
                time.sleep(0.1)
            kills = (group / "memory.oom_control").read_text().split()
            peak = int((group / "memory.max_usage_in_bytes").read_text()) / 2**20
            print(
                f"\n99 MiB edit under 256 MiB: {len(replies)} replies, peak {peak:.0f} MiB, oom_control {kills}"
            )
            assert server.pids()[1:] == workers, f"workers died:\n{server.log_tail()}"
            assert all(" Ada: " in reply for reply in replies)
            assert server.log_path.read_text().count("over the caller directory's limit of 4 MiB") == 2
        finally:
            server.stop()
