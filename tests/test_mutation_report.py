"""The mutation report's equivalents list: which survivors an entry explains, and which entries are stale."""

from devtools.mutation_report import covers, reason_for

KNOWN = {
    "config.x_f__mutmut_1": "exact",
    "config.x_f__mutmut_*": "any of x_f",
    "config.x_f__mutmut_2*": "the twenties",
}


def test_an_exact_name_explains_only_that_mutant():
    assert covers("config.x_f__mutmut_1", "config.x_f__mutmut_1")
    assert not covers("config.x_f__mutmut_1", "config.x_f__mutmut_12")


def test_a_prefix_entry_explains_the_mutants_it_starts():
    assert covers("config.x_f__mutmut_2*", "config.x_f__mutmut_23")
    assert not covers("config.x_f__mutmut_2*", "config.x_g__mutmut_23")


def test_the_exact_name_wins_then_the_longest_prefix():
    assert reason_for("config.x_f__mutmut_1", KNOWN) == "exact"
    assert reason_for("config.x_f__mutmut_23", KNOWN) == "the twenties"
    assert reason_for("config.x_f__mutmut_3", KNOWN) == "any of x_f"
    assert reason_for("config.x_g__mutmut_3", KNOWN) == ""
