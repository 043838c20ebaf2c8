"""CSV outputs that hold cells a spreadsheet would run as formulas are named in a note (CSV injection)."""

from __future__ import annotations

import pandas as pd

from advgen.writers import TableWriter, count_formula_cells, formula_like


def test_formula_like_cells_but_not_numbers_or_a_lone_dash():
    for cell in ["=1+1", "@SUM(1+1)*cmd|' /C calc'!A0", '=HYPERLINK("http://evil.example","x")', "+cmd", "-2+3", "\tx=1"]:
        assert formula_like(cell), cell
    for cell in ["-5", "+3", "-1e3", "-", "+", "normal", "a=b", ""]:
        assert not formula_like(cell), cell


def test_counts_text_columns_only():
    df = pd.DataFrame({"n": [-1, -2], "c": ["=1+1", "tcp"], "label": ["@x", "@y"]})
    counts: dict[str, int] = {}
    count_formula_cells(df, counts)
    assert counts == {"c": 1, "label": 2}


def test_a_csv_with_formula_cells_is_written_unchanged_with_one_note(tmp_path, capsys):
    # the audit: a model's vocabulary (or the data) wrote '=HYPERLINK(...)' cells that a spreadsheet runs
    df = pd.DataFrame({"=cmd|' /C calc'!A0": [1, 2], "proto": ["=1+1", "udp"], "Label": ["normal", "-x"]})
    with TableWriter(tmp_path / "rows.csv", 2) as writer:
        writer.write(df)
    assert pd.read_csv(tmp_path / "rows.csv")["proto"].tolist() == ["=1+1", "udp"]  # the data is not altered
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: ") and "CSV injection" in err[0]
    assert "proto (1)" in err[0] and "Label (1)" in err[0] and "(the header)" in err[0]


def test_plain_data_gives_no_note(tmp_path, capsys):
    with TableWriter(tmp_path / "rows.csv", 2) as writer:
        writer.write(pd.DataFrame({"n": [-1, 2], "service": ["-", "http"]}))
    assert capsys.readouterr().err == ""
