"""benchmarks/fit_hashes.py: the bit-for-bit table of the fit path (issue 21).

A few cases of the script's own list, run twice: rows have the documented
format and one case gives the same hashes each time. ``--compare`` reports a
changed row and exits 1. The whole table is a benchmark, not a test: its
hashes hold on one machine only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fit_hashes  # noqa: E402
from benchmarks.fit_hash_cases import Case  # noqa: E402

TRAINED_ROW = re.compile(r"^\S+  [0-9a-f]{16}  [0-9a-f]{16}$")
RAISED_ROW = re.compile(r"^\S+  raised  [0-9a-f]{16}$")
CASES = ("numpy-f64/adam", "numpy-f32/memmap-chunks", "numpy-f64/error/fit-batch-0")


@pytest.fixture(scope="module")
def cases() -> dict:
    listed = fit_hashes.all_cases(["numpy"])
    return {c.name: c for c in listed if c.name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_a_case_gives_one_well_formed_row_twice(cases, name):
    first, second = (fit_hashes.run_case(cases[name]) for _ in range(2))
    pattern = RAISED_ROW if "/error/" in name else TRAINED_ROW
    assert pattern.match(first), first
    assert first.split()[0] == name
    assert first == second


def test_a_failing_case_is_an_error_row_and_the_run_goes_on():
    def broken():
        raise ZeroDivisionError("division by zero")

    rows = list(fit_hashes.run_rows([Case("bad", broken), Case("fine", lambda: ([], {}))]))
    assert rows[0] == "bad  ERROR  ZeroDivisionError: division by zero"
    assert TRAINED_ROW.match(rows[1])


def test_an_error_case_that_trains_is_an_error_row():
    row = fit_hashes.run_case(Case("quiet", lambda: ([], {}), raises=True))
    assert row.startswith("quiet  ERROR  ")


def test_hashes_see_one_ulp_and_ignore_nothing_else():
    a = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    b = a.copy()
    b[2, 3] = np.nextafter(b[2, 3], 2.0)
    assert fit_hashes.hash_arrays([a]) != fit_hashes.hash_arrays([b])
    assert fit_hashes.hash_arrays([a]) != fit_hashes.hash_arrays([a.reshape(4, 3)])
    assert fit_hashes.hash_record({"loss": [0.1]}) != fit_hashes.hash_record(
        {"loss": [np.nextafter(0.1, 1.0)]})
    assert fit_hashes.hash_record({"loss": [0.5]}) == fit_hashes.hash_record(
        {"loss": [np.float32(0.5)]})


def test_compare_prints_the_rows_that_differ(tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("# fit_hashes git aaa\n"
                 "x  0000000000000000  1111111111111111\ny  raised  2222222222222222\n")
    b.write_text("# fit_hashes git bbb\n"
                 "x  0000000000000000  1111111111111111\ny  raised  3333333333333333\n"
                 "z  ERROR  ValueError: new\n")
    assert fit_hashes.main(["--compare", str(a), str(a)]) == 0
    assert fit_hashes.main(["--compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "y\n  A: raised  2222222222222222\n  B: raised  3333333333333333" in out
    assert "z\n  A: (missing)" in out
    assert "2 of 3 rows differ" in out  # the stack lines are shown, not counted
    assert "note: made with\n  A: # fit_hashes git aaa\n  B: # fit_hashes git bbb" in out
    assert "x\n" not in out
