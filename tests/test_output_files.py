"""Every file a user names for output (`augment -o`, `evaluate --json/--html`, `export -o` and its
manifest) behaves as `advgen sample -o` does: an existing file is replaced once the new one is complete,
with a note on stderr, and a path that is not a regular file (a folder, a device such as /dev/full, a
pipe) is refused up front with one line that says what it is, and left as it was.
(`advgen-runtime disguise -o` is tested in test_adversarial_export.py, beside its evasion model.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from advgen.cli import cli

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result, line: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr == f"Error: {line}\n", result.output


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny tabular run, the CSV it trained on)."""
    d = tmp_path_factory.mktemp("output-files")
    rng = np.random.default_rng(0)
    n = 300
    pd.DataFrame({
        "dur": rng.exponential(2, n).round(2),
        "bytes": rng.integers(0, 1000, n),
        "proto": rng.choice(["tcp", "udp"], n),
        "label": rng.choice(["normal", "scan", "dos"], n, p=[0.6, 0.2, 0.2]),
    }).to_csv(d / "t.csv", index=False)
    result = invoke(
        "train", "--plugin", "tabular", "--data", str(d / "t.csv"), "--label", "label", "--steps", "5",
        "--batch-size", "32", "--n-samples", "0", "--threads", "1", "--out", str(d / "run"), "-q",
    )
    assert result.exit_code == 0, result.output
    return d / "run", d / "t.csv"


def not_files(tmp_path: Path, name: str) -> list[tuple[Path, str]]:
    """(path, what it is) for a folder, a pipe and /dev/full, where each exists here."""
    folder = tmp_path / name
    folder.mkdir()
    cases = [(folder, "a folder")]
    if hasattr(os, "mkfifo"):
        pipe = tmp_path / f"pipe-{name}"
        os.mkfifo(pipe)
        cases.append((pipe, "a pipe"))
    if os.path.exists("/dev/full"):
        cases.append((Path("/dev/full"), "a device"))
    return cases


def unchanged(path: Path, what: str) -> bool:
    mode = os.stat(path).st_mode
    if what == "a folder":
        return stat.S_ISDIR(mode) and list(path.iterdir()) == []
    return stat.S_ISFIFO(mode) if what == "a pipe" else stat.S_ISCHR(mode)


# --- advgen augment -o --------------------------------------------------------------------------------


def test_augment_replaces_an_existing_file_and_says_so(table_run, tmp_path):
    run, data = table_run
    out = tmp_path / "aug.csv"
    args = ("augment", str(run), "--data", str(data), "--label", "label", "--classes", "scan", "-o", str(out))
    first = invoke(*args, "--per-class", "5")
    assert first.exit_code == 0 and first.stderr == "", first.output
    second = invoke(*args, "--per-class", "7")
    assert second.exit_code == 0, second.output
    assert second.stderr == f"note: replaced existing file {out}\n"
    assert second.stdout.startswith("wrote 307 rows (7 synthetic; scan: 7)")
    assert len(pd.read_csv(out)) == 307


def test_augment_to_a_folder_a_pipe_or_a_device_is_one_line(table_run, tmp_path):
    run, data = table_run
    for path, what in not_files(tmp_path, "aug.csv"):
        result = invoke("augment", str(run), "--data", str(data), "--label", "label", "--classes", "scan",
                        "--per-class", "5", "-o", str(path))
        one_error_line(result, f"-o {path} is {what}, not a regular file")
        assert unchanged(path, what), what


def test_augment_over_its_own_input_is_refused(table_run, tmp_path):
    run, data = table_run
    copy = tmp_path / "t.csv"
    copy.write_bytes(data.read_bytes())
    for given in (str(copy), f"{tmp_path}/./t.csv"):
        result = invoke("augment", str(run), "--data", str(copy), "--label", "label", "--classes", "scan",
                        "--per-class", "5", "-o", given)
        one_error_line(result, f"-o {given} is the input --data: writing there would replace it; choose another file")
    assert copy.read_bytes() == data.read_bytes()


# --- advgen evaluate --json / --html --------------------------------------------------------------


def _evaluate(run: Path, *args: str):
    return invoke("evaluate", str(run), "-n", "100", "--seeds", "1", "--folds", "2", "--max-rows", "100",
                  "--realism", "logistic-regression", "--detector", "logistic-regression", "--no-plots", "-q",
                  "--threads", "1", *args)


def test_evaluate_replaces_existing_reports_and_says_so(table_run, tmp_path):
    run, _ = table_run
    json_out, html_out = tmp_path / "r.json", tmp_path / "r.html"
    json_out.write_text("{}\n")
    html_out.write_text("old\n")
    result = _evaluate(run, "--json", str(json_out), "--html", str(html_out))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"note: replaced existing file {json_out}\nnote: replaced existing file {html_out}\n"
    assert '"realism"' in json_out.read_text() and html_out.read_text().startswith("<!doctype html>")
    again = _evaluate(run, "--json", str(tmp_path / "new.json"))
    assert again.exit_code == 0 and "note:" not in again.stderr, again.output


def test_evaluate_to_a_folder_a_pipe_or_a_device_is_one_line_before_any_work(table_run, tmp_path):
    run, _ = table_run
    for option in ("--json", "--html"):
        for path, what in not_files(tmp_path, f"report{option}"):
            result = _evaluate(run, option, str(path))
            one_error_line(result, f"{option} {path} is {what}, not a regular file")  # no report printed first
            assert unchanged(path, what), (option, what)


def test_evaluate_refuses_one_file_for_two_outputs_or_for_an_input(table_run, tmp_path):
    run, data = table_run
    same = tmp_path / "r.out"
    one_error_line(_evaluate(run, "--json", str(same), "--html", str(same)),
                   f"--html {same} is also --json: give each output its own file")
    assert not same.exists()
    copy = tmp_path / "test.csv"
    copy.write_bytes(data.read_bytes())
    result = _evaluate(run, "--test", str(copy), "--label", "label", "--html", str(copy))
    one_error_line(result, f"--html {copy} is the input --test: writing there would replace it; choose another file")
    assert copy.read_bytes() == data.read_bytes()


# --- advgen export -o -------------------------------------------------------------------------------


def test_export_replaces_the_model_and_its_manifest_and_says_so(table_run, tmp_path):
    run, _ = table_run
    model = tmp_path / "m.onnx"
    first = invoke("export", str(run), "-o", str(model), "--skip-parity")
    assert first.exit_code == 0 and first.stderr == "", first.output
    model.write_bytes(b"old")
    second = invoke("export", str(run), "-o", str(model), "--skip-parity")
    assert second.exit_code == 0, second.output
    assert second.stderr == f"note: replaced existing file {model}\nnote: replaced existing file {model}.json\n"
    assert model.stat().st_size > 1000


def test_export_to_a_folder_a_pipe_or_a_device_is_one_line(table_run, tmp_path):
    run, _ = table_run
    for path, what in not_files(tmp_path, "m.onnx"):
        one_error_line(invoke("export", str(run), "-o", str(path)), f"-o {path} is {what}, not a regular file")
        assert unchanged(path, what), what
    # the manifest beside the model is checked before anything is written: no model without its manifest
    (tmp_path / "x.onnx.json").mkdir()
    result = invoke("export", str(run), "-o", str(tmp_path / "x.onnx"))
    one_error_line(result, f"the manifest {tmp_path / 'x.onnx.json'} is a folder, not a regular file")
    assert not (tmp_path / "x.onnx").exists()
