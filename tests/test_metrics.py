"""/metrics: Prometheus text, exact counts by outcome and fresh reason, no numbers, bodies or names.

And the workers' metrics folder (metrics_folder.py): what start-up removes, what exit removes, and a worker
that cannot write there, which answers webhooks all the same.
"""

import logging
import os
import tempfile
from pathlib import Path

import pytest
from helpers import ALICE, BOB, SERVICE, echoed, plant_cookie, rewrite
from prometheus_client.parser import text_string_to_metric_families

import metrics_folder
import serve
from metrics import Metrics, outcome_label


def samples(app) -> dict[tuple[str, tuple], float]:
    """Scrape /metrics; return {(sample name, sorted labels): value}."""
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_webhooks_are_counted_by_outcome_and_fresh_reason(app, twilio, clock):
    for body in ["hello", "two", "HELP", "RESET", "again", "STOP"]:
        twilio.send(body, ALICE, SERVICE)
    plant_cookie(twilio, BOB, SERVICE, "garbage", clock)
    twilio.send("hi", BOB, SERVICE)
    app.test_client().post(
        "/sms", data={"From": ALICE, "To": SERVICE}, headers={"X-Twilio-Signature": "forged"}
    )
    app.test_client().put("/sms")

    found = samples(app)
    expected = {"reply": 4, "keyword_help": 1, "keyword_reset": 1, "keyword_stop": 1, "refused_signature": 1,
                "refused_method": 1}  # fmt: skip
    for outcome, n in expected.items():
        assert count(found, "responder_webhooks_total", outcome=outcome) == n, outcome
    assert count(found, "responder_conversations_fresh_total", reason="new") == 2  # Alice, then after RESET
    assert count(found, "responder_conversations_fresh_total", reason="garbage") == 1
    assert count(found, "responder_webhook_duration_seconds_count") == 9
    assert count(found, "responder_caller_directory_entries") == 0
    assert any(name.startswith("process_") for name, _ in found)


def test_no_number_body_or_name_reaches_a_label(make_app, make_phone, tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada Lovelace\n")
    app = make_app(CALLERS_FILE=str(directory))
    make_phone(app).send("my secret diary", ALICE, SERVICE)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for leaked in ["Ada", "diary", ALICE, ALICE[-7:], SERVICE[-7:]]:
        assert leaked not in text
    assert count(samples(app), "responder_caller_directory_entries") == 1


def test_a_failed_directory_reload_is_counted(make_app, clock, tmp_path):

    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    app = make_app(CALLERS_FILE=str(directory))
    rewrite(directory, "number,name\nnot-a-number,Ada\n", clock)
    clock.advance(10)
    assert app.test_client().get("/readyz").status_code == 200  # the previous directory still serves
    found = samples(app)
    assert count(found, "responder_caller_directory_reload_failures_total") == 1
    assert count(found, "responder_caller_directory_entries") == 1  # the previous directory is kept


@pytest.mark.parametrize(
    ("outcome", "label"),
    [("reply", "reply"), ("keyword:stop", "keyword_stop"), ("refused:signature", "refused_signature"),
     ("refused:400", "refused_bad_request"), ("refused:413", "refused_too_large"), ("error:500", "error")],
)  # fmt: skip
def test_log_outcomes_become_labels(outcome, label):
    assert outcome_label(outcome) == label


@pytest.fixture
def master(monkeypatch, tmp_path):
    """Play the server's master: serve.metrics_dir() with temporary folders in tmp_path, let go of afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    yield serve.metrics_dir
    metrics_folder.remove_if_ours(None)


def test_start_up_removes_the_metrics_files_of_a_previous_run_and_nothing_else(master, monkeypatch, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    previous_run = {"counter_812.db", "histogram_812.db", "gauge_livemostrecent_812.db"}
    others = {"backup.db", "gauge_liveall_812.db", "counter_notes.db", "caller-directory.last-good.json"}
    for name in previous_run | others:
        (folder / name).write_text("kept?")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))

    assert master() == str(folder)
    assert set(os.listdir(folder)) == others


def test_the_folder_made_when_none_is_set_is_removed_at_exit_and_a_set_one_is_kept(
    master, monkeypatch, tmp_path
):
    made = Path(master())
    assert made.parent == tmp_path and made.name.startswith("sms-responder-metrics-")
    (tmp_path / "set").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "set"))
    master()
    (made / "counter_812.db").write_text("")

    metrics_folder.remove_if_ours(None)  # gunicorn's on_exit
    assert os.listdir(tmp_path) == ["set"]


def test_a_worker_has_its_metrics_files_space_on_disk_before_anything_is_counted(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    Metrics()
    pid = os.getpid()
    names = {f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_livemostrecent_{pid}.db"}
    assert set(os.listdir(tmp_path)) == names
    for name in names:
        found = (tmp_path / name).stat()
        assert found.st_size == metrics_folder.RESERVED_BYTES  # prometheus_client's size: it maps it as it is
        assert found.st_blocks * 512 >= found.st_size, (
            f"{name} is sparse: its first write on a full disk is a SIGBUS"
        )


def test_a_worker_whose_metrics_folder_cannot_be_written_answers_webhooks_and_says_why_on_metrics(
    make_app, make_phone, monkeypatch, tmp_path, caplog
):
    missing = tmp_path / "gone" / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))
    app = make_app()
    phone = make_phone(app)

    assert phone.send("hello", ALICE, SERVICE).text == echoed(1, "hello")
    assert phone.send("STOP", ALICE, SERVICE).status == 200
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 503 and answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    assert f"metrics are off in this worker: PROMETHEUS_MULTIPROC_DIR={missing} cannot be written" in text
    warnings = [r for r in caplog.records if r.name == "responder" and "metrics are off" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]  # one, however many webhooks follow
    assert warnings[0].getMessage() == (
        f"metrics are off in this worker: PROMETHEUS_MULTIPROC_DIR={missing} cannot be written (No such file "
        "or directory); webhooks are answered but not counted. Free space there or fix it, then reload the "
        "server (SIGHUP)"
    )
    assert warnings[0].getMessage() in text


def test_metrics_describe_themselves(app):
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for line in [
        "# HELP responder_webhooks_total Webhooks answered, by outcome.",
        "# HELP responder_conversations_fresh_total Conversations that started fresh, by why (new: no cookie yet).",
        "# HELP responder_webhook_duration_seconds Time spent answering a webhook.",
        "# HELP responder_caller_directory_entries Numbers in the caller directory.",
        "# HELP responder_caller_directory_reload_failures_total Caller directory reloads that failed (the previous directory was kept).",
        'responder_webhook_duration_seconds_bucket{le="0.0005"} 0.0',
        'responder_webhook_duration_seconds_bucket{le="2.5"} 0.0',
    ]:
        assert line in text.splitlines(), line
    with app.test_request_context():
        from flask import url_for

        assert url_for("metrics") == "/metrics"
    assert app.test_client().post("/metrics").status_code == 405


def test_a_second_instance_on_a_held_metrics_folder_exits_2_naming_the_folder(master, capsys, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    metrics_folder.hold(str(folder))  # the first instance's master
    held = len(metrics_folder._held)
    with pytest.raises(SystemExit) as refused:
        metrics_folder.hold(str(folder))  # flock is per open folder: a second open is a second instance
    assert refused.value.code == 2 and len(metrics_folder._held) == held
    assert capsys.readouterr().err == (
        f"responder: PROMETHEUS_MULTIPROC_DIR={folder} is in use by another running instance, whose counts "
        "this one would wipe: give each instance its own folder (or leave the variable unset)\n"
    )


def test_a_metrics_folder_that_cannot_be_locked_only_warns(master, capsys, tmp_path):
    missing = tmp_path / "gone"
    held = len(metrics_folder._held)
    metrics_folder.hold(str(missing))
    assert len(metrics_folder._held) == held
    assert capsys.readouterr().err == (
        f"responder: cannot lock the metrics folder {missing} (No such file or directory); give no other "
        "instance the same one\n"
    )


def test_with_no_folder_set_one_is_made_in_the_temporary_root_or_start_up_exits_2(master, capsys, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert Path(metrics_folder.prepare("", str(root))).parent == root
    with pytest.raises(SystemExit) as refused:
        metrics_folder.prepare("", str(tmp_path / "missing"))
    assert refused.value.code == 2
    assert capsys.readouterr().err == (
        f"responder: cannot make a metrics folder in {tmp_path / 'missing'} (No such file or directory): "
        "set PROMETHEUS_MULTIPROC_DIR\n"
    )


def test_a_set_folder_that_cannot_be_made_only_warns_and_metrics_go_off_in_the_workers(
    master, capsys, tmp_path
):
    (tmp_path / "a-file").write_text("")
    chosen = str(tmp_path / "a-file" / "metrics")
    assert metrics_folder.prepare(chosen, str(tmp_path)) == chosen
    assert capsys.readouterr().err == (
        f"responder: cannot make the metrics folder PROMETHEUS_MULTIPROC_DIR={chosen} (Not a directory)\n"
    )


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("fault", ["the folder is missing", "the file system has no locks"])
def test_a_metrics_folder_that_cannot_be_locked_leaves_no_descriptor_open(
    master, monkeypatch, tmp_path, fault
):
    folder = tmp_path / "metrics"
    if fault == "the folder is missing":
        folder = tmp_path / "gone"
    else:
        folder.mkdir()

        def no_locks(fd, operation):
            raise OSError(37, "No locks available")

        monkeypatch.setattr(metrics_folder.fcntl, "flock", no_locks)
    before = open_descriptors()
    metrics_folder.hold(str(folder))
    assert open_descriptors() == before


def test_exit_does_not_fail_when_the_made_folder_is_already_gone(master, tmp_path):
    made = Path(master())
    (made / "counter_812.db").write_text("")
    os.rename(made, tmp_path / "moved")  # a temp cleaner took it
    metrics_folder.remove_if_ours(None)
    assert not made.exists()


def test_a_previous_runs_files_that_cannot_be_listed_only_warn(capsys, tmp_path):
    (tmp_path / "a-file").write_text("")
    metrics_folder.remove_previous_files(str(tmp_path / "a-file"))
    assert capsys.readouterr().err == (
        f"responder: cannot remove a previous run's metrics files from {tmp_path / 'a-file'} (Not a directory)\n"
    )


def test_reserving_a_workers_files_says_nothing_when_it_succeeds_and_leaves_plain_data_files(tmp_path):
    assert metrics_folder.reserve(str(tmp_path), 812) == ""
    for name in os.listdir(tmp_path):
        assert (tmp_path / name).stat().st_mode & 0o111 == 0, name


@pytest.mark.parametrize(
    ("error", "why"),
    [(OSError(28, "No space left on device"), "No space left on device"), (OSError("quota"), "quota")],
)
def test_a_reservation_that_fails_removes_only_the_files_it_made_and_says_why(
    monkeypatch, tmp_path, error, why
):
    counter, histogram, gauge = (tmp_path / f"{kind}_812.db" for kind in metrics_folder.KINDS)
    counter.write_bytes(b"counts of this pid's previous worker")
    real_fallocate = os.posix_fallocate

    def fallocate(fd, offset, length):
        if Path(f"/proc/self/fd/{fd}").resolve() == gauge:
            gauge.unlink()  # gone before the clean-up looks for it
            raise error
        real_fallocate(fd, offset, length)

    monkeypatch.setattr(metrics_folder.os, "posix_fallocate", fallocate)
    assert metrics_folder.reserve(str(tmp_path), 812) == why
    assert not histogram.exists() and os.listdir(tmp_path) == [counter.name]
    assert counter.read_bytes().startswith(b"counts of this pid's previous worker")


def counts_in(path: Path) -> dict[str, float]:
    from prometheus_client.mmap_dict import MmapedDict

    return {key: value for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path))}


def worker_file(folder: Path, kind: str, pid: int, counts: dict[str, float]) -> None:
    """Write a worker's metrics file as prometheus_client does."""
    from prometheus_client.mmap_dict import MmapedDict

    values = MmapedDict(str(folder / f"{kind}_{pid}.db"))
    for key, value in counts.items():
        values.write_value(key, value, 0.0)
    values.close()


def test_exited_workers_counts_are_added_to_one_archive_per_kind_and_their_files_removed(tmp_path):
    worker_file(tmp_path, "counter", 812, {"reply": 3.0, "stop": 1.0})
    worker_file(tmp_path, "histogram", 812, {"le=0.001": 2.0, "sum": 0.5})
    worker_file(tmp_path, "counter", 813, {"reply": 4.0, "duplicate": 2.0})
    (tmp_path / "gauge_livemostrecent_812.db").write_bytes(b"")  # mark_process_dead's to remove
    assert metrics_folder.retire(str(tmp_path), 812) == ""
    assert metrics_folder.retire(str(tmp_path), 813) == ""
    assert counts_in(tmp_path / "counter_archive.db") == {"reply": 7.0, "stop": 1.0, "duplicate": 2.0}
    assert counts_in(tmp_path / "histogram_archive.db") == {"le=0.001": 2.0, "sum": 0.5}
    assert sorted(os.listdir(tmp_path)) == [
        ".scrape.lock",
        "counter_archive.db",
        "gauge_livemostrecent_812.db",
        "histogram_archive.db",
    ]
    assert metrics_folder.OURS.fullmatch("counter_archive.db")  # a previous run's archive is removed at start


def test_a_fold_that_cannot_write_keeps_the_dead_workers_file_and_says_why(tmp_path, monkeypatch):
    worker_file(tmp_path, "counter", 812, {"reply": 3.0})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics_folder.tempfile, "mkstemp", full)
    assert metrics_folder.retire(str(tmp_path), 812) == (
        f"cannot fold the exited worker 812's counter metrics into {tmp_path / 'counter_archive.db'} "
        "([Errno 28] No space left on device)"
    )
    assert (
        counts_in(tmp_path / "counter_812.db") == {"reply": 3.0}
        and not (tmp_path / "counter_archive.db").exists()
    )
