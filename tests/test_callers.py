"""The caller directory: parsing, normalisation to E.164, and errors that name file and line."""

import pytest

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
