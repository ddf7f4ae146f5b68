"""The caller directory: parsing, normalisation to E.164, and errors that name file and line."""

import logging
import os

import pytest
from helpers import ALICE, SERVICE, rewrite

from callers import DirectoryError, load_directory, parse_directory, to_e164


@pytest.mark.parametrize(
    ("written", "region", "e164"),
    [
        ("+1 500 555 0101", "US", "+15005550101"),
        ("(500) 555-0101", "US", "+15005550101"),
        ("500.555.0101", "US", "+15005550101"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 20 7946 0018", "US", "+442079460018"),
        ("0049 30 901820", "DE", "+4930901820"),
    ],
)
def test_numbers_in_common_formats_become_e164(written, region, e164):
    assert to_e164(written, region) == e164


def test_a_directory_maps_numbers_to_names():
    directory = parse_directory(["number,name", "(500) 555-0101,Ada Lovelace", '"+1 500 555 0102","Hopper, Grace"'],
                                "callers.csv", "US")  # fmt: skip
    assert directory.name_for("+15005550101", "Friend") == "Ada Lovelace"
    assert directory.name_for("+15005550102", "Friend") == "Hopper, Grace"
    assert directory.name_for("+15005550103", "Friend") == "Friend"


@pytest.mark.parametrize(
    ("lines", "where", "what"),
    [
        (["name,number", "+15005550101,Ada"], "callers.csv:1:", "header"),
        ([], "callers.csv:1:", "header"),
        (["number,name", "+15005550101,Ada", "12,Bob"], "callers.csv:3:", "digits"),
        (["number,name", "call me,Bob"], "callers.csv:2:", "not a phone number"),
        (["number,name", "+15005550101,"], "callers.csv:2:", "name is empty"),
        (["number,name", "+15005550101,Ada,extra"], "callers.csv:2:", "2 columns"),
        (["number,name", "+15005550101," + "x" * 101], "callers.csv:2:", "longer"),
        (["number,name", "+15005550101,Ada\x00"], "callers.csv:2:", "control characters"),
        (["number,name", '+15005550101,"' + "x" * 200_000 + '"'], "callers.csv:2:", "not valid CSV"),
    ],
)
def test_a_bad_row_names_file_and_line(lines, where, what):
    with pytest.raises(DirectoryError) as caught:
        parse_directory(lines, "callers.csv", "US")
    assert str(caught.value).startswith(where) and what in str(caught.value)
    assert "5550101" not in str(caught.value) and "call me" not in str(caught.value)


def test_duplicates_are_reported_and_the_first_kept():
    directory = parse_directory(
        ["number,name", "+15005550101,Ada", "", "(500) 555-0101,Imposter"], "c.csv", "US"
    )
    assert directory.name_for("+15005550101", "") == "Ada"
    assert len(directory.warnings) == 1
    assert directory.warnings[0].startswith("c.csv:4: duplicate of line 2")
    assert "5550101" not in directory.warnings[0]


def test_the_file_may_start_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "callers.csv"
    path.write_bytes("\ufeffnumber,name\n+15005550101,Zoë\n".encode())
    assert load_directory(path, "US").names == {"+15005550101": "Zoë"}


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "callers.csv"
    path.write_bytes(b"number,name\n+15005550101,\xff\xfe\n")
    with pytest.raises(DirectoryError, match="not UTF-8"):
        load_directory(path, "US")


def test_the_shipped_example_directory_loads():
    from pathlib import Path

    directory = load_directory(Path(__file__).parent.parent / "callers.example.csv", "US")
    assert len(directory) >= 3 and not directory.warnings


def test_a_duplicate_row_keeps_the_first_and_every_row_after_it():
    lines = [
        "number,name",
        "+15005550101,Ada",
        "+1 500 555 0101,Ada again",
        "+15005550102,Bob",
        "+15005550103,Cy",
    ]
    directory = parse_directory(lines, "callers.csv", "US")
    assert directory.names == {"+15005550101": "Ada", "+15005550102": "Bob", "+15005550103": "Cy"}
    assert directory.warnings == ("callers.csv:3: duplicate of line 2 (+1500555****); keeping the first",)


def test_every_bad_row_is_reported_with_its_line_number():
    lines = ["number,name", "+15005550101,Ada", "call me,Bob", "+15005550102,", "+15005550103,Cy", "12,Dee"]
    with pytest.raises(DirectoryError) as caught:
        parse_directory(lines, "callers.csv", "US")
    assert [p.split(" ", 1)[0] for p in caught.value.problems] == [
        "callers.csv:3:",
        "callers.csv:4:",
        "callers.csv:6:",
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)


def test_after_ten_bad_rows_the_rest_are_counted():
    with pytest.raises(DirectoryError) as caught:
        parse_directory(["number,name"] + ["nonsense,Bob"] * 25, "callers.csv", "US")
    assert len(caught.value.problems) == 11
    assert caught.value.problems[9].startswith("callers.csv:11:")
    assert caught.value.problems[10] == "callers.csv: 15 more bad rows"


@pytest.mark.parametrize(
    ("written", "rest"), [("", "+15005550102,Bob\n"), ("+1500555010", "2,Bob\n")]
)  # the parse sees a good file, or a row cut short
def test_a_file_rewritten_while_it_is_read_is_not_accepted(tmp_path, monkeypatch, written, rest):
    import callers

    path = tmp_path / "callers.csv"
    path.write_text("number,name\n+15005550101,Ada\n" + written)
    parse = callers.parse_directory

    def parse_while_an_editor_writes(lines, source, region):
        try:
            return parse(lines, source, region)
        finally:
            with open(source, "a") as editor:
                editor.write(rest)

    monkeypatch.setattr(callers, "parse_directory", parse_while_an_editor_writes)
    with pytest.raises(callers.FileChanging, match="changed while it was read"):
        load_directory(path, "US")
    monkeypatch.undo()
    assert len(load_directory(path, "US")) == 2


def test_an_in_place_rewrite_is_never_served_half_written(tmp_path):
    import threading
    import time

    from callers import WatchedDirectory

    path = tmp_path / "callers.csv"
    rows = [f"+1500555{i:04d},Person {i}" for i in range(400)]
    path.write_text("\n".join(["number,name", *rows]) + "\n")
    watched = WatchedDirectory(str(path), "US", load_directory(path, "US"))
    done = threading.Event()

    def editor():  # rewrites the file in place, half of it at a time, as a slow editor or `cat` does
        while not done.is_set():
            with path.open("w") as f:
                f.write("\n".join(["number,name", *rows[:200]]) + "\n")
                f.flush()
                time.sleep(0.005)
                f.write("\n".join(rows[200:]) + "\n")

    writing = threading.Thread(target=editor)
    writing.start()
    sizes = set()
    try:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            watched.check()
            sizes.add(len(watched.directory))
    finally:
        done.set()
        writing.join()
    assert sizes == {400}
    old = time.time() - 2
    os.utime(path, (old, old))  # the editor has finished: the file settles
    path.write_text(path.read_text().replace("Person 7\n", "Person Seven\n"))
    os.utime(path, (old, old))
    watched.check()
    assert watched.directory.name_for("+15005550007", "") == "Person Seven" and not watched.problem


def test_a_large_directory_is_reloaded_in_the_background_while_the_old_one_serves(tmp_path, monkeypatch):
    import threading
    import time

    import callers

    path = tmp_path / "callers.csv"
    rows = [f"+1500555{i:04d},Person {i}" for i in range(1000)]  # about 24 KiB
    path.write_text("\n".join(["number,name", *rows]) + "\n")
    watched = callers.WatchedDirectory(str(path), "US", load_directory(path, "US"))
    path.write_text("\n".join(["number,name", *rows[:999], "+15005550999,Somebody Else"]) + "\n")
    old = time.time() - 2
    os.utime(path, (old, old))
    may_finish = threading.Event()
    real_load = callers.load_directory
    monkeypatch.setattr(callers, "load_directory", lambda *a: may_finish.wait(10) and real_load(*a))
    watched.check()
    assert watched.thread is not None and watched.thread.is_alive()
    assert watched.thread.name == "caller-directory" and watched.thread.daemon  # never holds up an exit
    assert watched.directory.name_for("+15005550999", "") == "Person 999"  # meanwhile: the previous one
    watched.check()  # a second check while the first reload runs starts no other
    may_finish.set()
    watched.thread.join(10)
    assert watched.directory.name_for("+15005550999", "") == "Somebody Else"


def test_a_name_of_exactly_100_characters_is_accepted_101_refused():
    from callers import DirectoryError, parse_directory

    assert parse_directory(["number,name", "+15005550101," + "N" * 100], "c.csv", "US").names
    with pytest.raises(DirectoryError, match="longer than 100 characters"):
        parse_directory(["number,name", "+15005550101," + "N" * 101], "c.csv", "US")
    with pytest.raises(DirectoryError, match="control characters"):
        parse_directory(["number,name", "+15005550101,A\ud800"], "c.csv", "US")


def test_a_number_with_the_wrong_digit_count_reads_exactly():
    from callers import to_e164

    with pytest.raises(ValueError) as caught:
        to_e164("+1 500 555 01", "US")
    assert str(caught.value) == "the number has the wrong number of digits for its country"


def test_a_reloaded_directory_reads_national_numbers_in_the_default_region(
    make_app, make_phone, clock, tmp_path
):

    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    app = make_app(CALLERS_FILE=str(directory))
    rewrite(directory, "number,name\n(500) 555-0101,Grace\n", clock)
    clock.advance(6)
    assert make_phone(app).send("hi", ALICE, SERVICE).text.split(":")[0].endswith(" Grace")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "responder_caller_directory_reload_failures_total 0.0" in text.splitlines()


def test_caller_directory_warnings_and_reload_problems_are_logged(make_app, clock, tmp_path, caplog):

    caplog.set_level(logging.WARNING, logger="responder")
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n+15005550101,Ada again\n")
    app = make_app(CALLERS_FILE=str(directory))
    assert f"caller directory: {directory}:3: duplicate of line 2 (+1500555****); keeping the first" in [
        r.getMessage() for r in caplog.records
    ]
    rewrite(directory, "number,name\nnonsense,Bob\n", clock)
    clock.advance(5)  # exactly the recheck interval
    app.test_client().get("/readyz")
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith(
            f"caller directory not reloaded, keeping the previous one: {directory}:2: not a phone number"
        )
    )


def test_a_last_good_copy_makes_its_private_folders_and_a_failed_copy_leaves_no_temporary(tmp_path, caplog):
    import stat

    from callers import Directory, LastGood

    kept = LastGood(tmp_path / "a" / "b" / "copy.json")
    kept.save("callers.csv", Directory(text="number,name\n+15005550101,Zoë\n"))
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert "Zoë" in kept.path.read_text(encoding="utf-8")  # the text as written, not \u-escaped
    kept.path.unlink()
    kept.path.mkdir()  # a folder where the copy goes: the rename fails
    caplog.set_level(logging.WARNING, logger="responder")
    kept.save("callers.csv", Directory(text="number,name\n+15005550101,Ada\n"))
    assert os.listdir(kept.path.parent) == ["copy.json"]  # the temporary copy was removed
    assert caplog.records[-1].getMessage() == (
        f"caller directory: no last good copy kept at {kept.path} (Is a directory)"
    )


def test_a_reload_logs_the_new_files_duplicate_rows_and_a_file_being_written_is_read_again_later(
    tmp_path, caplog, monkeypatch
):
    import time

    import callers

    path = tmp_path / "callers.csv"
    path.write_text("number,name\n+15005550101,Ada\n")
    loads = []
    watched = callers.WatchedDirectory(
        str(path), "US", load_directory(path, "US"), lambda n, bad: loads.append((n, bad))
    )
    path.write_text("number,name\n+15005550101,Ada\n+15005550101,Ada again\n")
    old = time.time() - 2
    os.utime(path, (old, old))
    caplog.set_level(logging.INFO, logger="responder")
    watched.check()
    assert loads == [(1, False), (1, False)]  # at start, then the reload
    assert caplog.records[-1].getMessage() == (
        f"caller directory: {path}:3: duplicate of line 2 (+1500555****); keeping the first"
    )
    path.write_text("number,name\n+15005550102,Bob\n")
    os.utime(path, (old - 1, old - 1))

    def changing(*args):
        raise callers.FileChanging([f"{path} changed while it was read"])

    monkeypatch.setattr(callers, "load_directory", changing)
    watched.check()
    assert caplog.records[-1].getMessage() == (
        f"caller directory: {path} changed while it was read; reading it again in {callers.RECHECK_SECONDS:.0f} s"
    )
    assert len(loads) == 2 and not watched.problem  # not a failure: nothing counted


def test_blank_rows_are_skipped_and_add_no_entry():
    directory = parse_directory(["number,name", "", " , ", "+15005550101,Ada", ","], "c.csv", "US")
    assert directory.names == {"+15005550101": "Ada"} and not directory.warnings


def test_each_kind_of_bad_row_reads_exactly():
    lines = ["number,name", "+15005550101,Ada\x07", "+15005550102,", "+15005550103,Cy,extra"]
    with pytest.raises(DirectoryError) as caught:
        parse_directory(lines, "c.csv", "US")
    assert caught.value.problems == [
        "c.csv:2: the name contains control characters",
        "c.csv:3: the name is empty",
        "c.csv:4: expected 2 columns (number,name), got 3",
    ]


@pytest.mark.parametrize(
    ("bad_rows", "last"), [(10, "c.csv:11: not a phone number"), (11, "c.csv: 1 more bad rows")]
)
def test_ten_bad_rows_are_all_listed_and_an_eleventh_is_counted(bad_rows, last):
    with pytest.raises(DirectoryError) as caught:
        parse_directory(["number,name"] + ["nonsense,Bob"] * bad_rows, "c.csv", "US")
    assert len(caught.value.problems) == 10 + (bad_rows > 10)
    assert caught.value.problems[-1].startswith(last)


@pytest.mark.parametrize(("rows", "pauses"), [(255, 0), (256, 1), (511, 1), (512, 2)])
def test_a_long_parse_pauses_briefly_every_256_rows_for_other_greenlets(monkeypatch, rows, pauses):
    import callers

    slept = []
    monkeypatch.setattr(callers.time, "sleep", slept.append)
    lines = ["number,name"] + [f"+1500555{i:04d},P{i}" for i in range(rows)]
    assert len(parse_directory(lines, "c.csv", "US")) == rows
    assert len(slept) == pauses and all(0 < seconds <= 0.001 for seconds in slept)


def watched_file(tmp_path, text: str, loads: list):
    """A caller directory file and its WatchedDirectory, which records each load as (entries, failed)."""
    import callers

    path = tmp_path / "callers.csv"
    path.write_text(text)
    return path, callers.WatchedDirectory(
        str(path), "US", load_directory(path, "US"), lambda *a: loads.append(a)
    )


def settled(path) -> None:
    """Date a file two seconds back: written and done, no longer being written."""
    import time

    os.utime(path, (time.time() - 2, time.time() - 2))


@pytest.mark.parametrize(
    ("edit", "failed"),
    [
        (b"number,name\n+15005550102,Bob\n", False),
        (b"number,name\nnonsense,Bob\n", True),
        (b"number,name\n+15005550102,\xff\n", True),
    ],
    ids=["good", "bad row", "not UTF-8"],
)
def test_an_edit_is_read_once_however_often_the_unchanged_file_is_checked(tmp_path, edit, failed):
    loads = []
    path, watched = watched_file(tmp_path, "number,name\n+15005550101,Ada\n", loads)
    path.write_bytes(edit)
    settled(path)
    for _ in range(3):
        watched.check()
    assert loads == [(1, False), (1, failed)]


def test_a_file_renamed_over_the_directory_is_read_even_with_the_same_size_and_time(tmp_path):
    loads = []
    path, watched = watched_file(tmp_path, "number,name\n+15005550101,Ada\n", loads)
    settled(path)
    watched.check()
    other = tmp_path / "new.csv"
    other.write_text("number,name\n+15005550101,Bea\n")  # as long as the old text
    info = path.stat()
    os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(other, path)
    watched.check()
    assert watched.directory.names == {"+15005550101": "Bea"}


@pytest.mark.parametrize(("age", "reloaded"), [(0.0, False), (0.5, False), (1.0, True)])
def test_a_file_modified_less_than_a_second_ago_is_left_to_settle(tmp_path, clock, age, reloaded):
    loads = []
    path, watched = watched_file(tmp_path, "number,name\n+15005550101,Ada\n", loads)
    path.write_text("number,name\n+15005550102,Bob\n")
    modified_ns = int((clock() - age) * 1e9)
    os.utime(path, ns=(modified_ns, modified_ns))
    watched.check()
    assert (len(loads) == 2) is reloaded


def test_a_file_of_exactly_16_kib_is_reloaded_by_the_request_that_notices(tmp_path):
    import callers

    loads = []
    path, watched = watched_file(tmp_path, "number,name\n+15005550101,Ada\n", loads)
    text = "number,name\n+15005550101,Bea\n"
    path.write_text(text + " " * (callers.INLINE_RELOAD_BYTES - len(text) - 1) + "\n")
    assert path.stat().st_size == callers.INLINE_RELOAD_BYTES
    settled(path)
    watched.check()
    assert watched.thread is None and watched.directory.names == {"+15005550101": "Bea"}


def test_the_last_good_copy_is_parsed_for_the_region_and_names_its_source(tmp_path):
    from callers import LastGood

    source = str(tmp_path / "callers.csv")
    kept = LastGood(tmp_path / "copy.json")
    text = "number,name\n020 7946 0018,Ada\n020 7946 0018,Ada again\n"
    kept.save(source, load_text(tmp_path, text))
    directory = kept.load(source, "GB")
    assert directory.names == {"+442079460018": "Ada"}
    assert directory.warnings[0].startswith(f"{source}:3: duplicate of line 2")


def load_text(tmp_path, text: str):
    path = tmp_path / "written.csv"
    path.write_text(text)
    return load_directory(path, "GB")


def test_the_last_good_copy_is_written_beside_its_final_name_whatever_tmpdir_says(tmp_path, monkeypatch):
    import tempfile

    from callers import Directory, LastGood

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    kept = LastGood(tmp_path / "copy.json")
    kept.save("callers.csv", Directory(text="number,name\n+15005550101,Ada\n"))
    assert "Ada" in kept.path.read_text(encoding="utf-8")


def test_a_copy_that_cannot_be_put_in_place_only_warns_even_when_its_temporary_is_gone(
    tmp_path, monkeypatch, caplog
):
    import callers

    def lost(temporary, final):
        os.unlink(temporary)
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(callers.os, "replace", lost)
    caplog.set_level(logging.WARNING, logger="responder")
    kept = callers.LastGood(tmp_path / "copy.json")
    kept.save("callers.csv", callers.Directory(text="number,name\n"))
    assert caplog.records[-1].getMessage().endswith("(Invalid cross-device link)")
    assert os.listdir(tmp_path) == []


def test_an_edit_made_after_the_wall_clock_steps_back_is_still_read(make_app, make_phone, clock, tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    app = make_app(CALLERS_FILE=str(directory))
    clock.step_wall_clock(-3600)  # an NTP step back by an hour
    rewrite(directory, "number,name\n+15005550101,Grace\n", clock)
    clock.advance(6)  # real time passes: the 5 s recheck is due, whatever the wall clock says
    assert make_phone(app).send("hi", ALICE, SERVICE).text.split(":")[0].endswith(" Grace")


def test_a_number_that_is_not_one_is_explained_in_the_services_words():
    with pytest.raises(DirectoryError) as caught:
        parse_directory(["number,name", "call me,Bob", "+99 12345678,Cy"], "c.csv", "US")
    assert caught.value.problems == [
        "c.csv:2: not a phone number (it must be digits, with spaces, dots, dashes, brackets or a leading +)",
        "c.csv:3: not a phone number (an unknown country code, or none and no region to assume)",
    ]


def test_a_directory_of_more_rows_than_the_limit_is_refused_without_parsing_the_rest(monkeypatch):
    import callers

    monkeypatch.setattr(callers, "MAX_ROWS", 3)
    rows = ["number,name"] + [f"+1500555010{n},Person {n}" for n in range(3)]
    assert len(parse_directory(rows, "c.csv", "US")) == 3
    with pytest.raises(DirectoryError) as caught:
        parse_directory([*rows, "not even a number,x"], "c.csv", "US")
    assert caught.value.problems == ["c.csv: more than 3 rows, over the caller directory's limit"]
