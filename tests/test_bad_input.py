"""Bad input and bad arguments: one clear line and a non-zero exit, never a traceback.

Each case here gave a traceback, a crash or an allocation failure before it was handled. The
property-based tests feed arbitrary bytes, TOML and condition strings to the readers: the answer is
a result or an AdvgenError, never another exception.
"""

from __future__ import annotations

import errno
import gzip
import shutil
import re
import string
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advgen.cli import cli
from advgen.config import TrainConfig, available_cores
from advgen.errors import AdvgenError
from advgen_datasets.table import load_table, read_schema_file


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def train_curves(out: Path, *extra: str):
    return invoke(
        "train", "--plugin", "curves", "--steps", "3", "--batch-size", "16", "--n-samples", "0",
        "--option", "n_real=64", "--option", "length=8", "--threads", "1", "--out", str(out), "-q", *extra,
    )


# --- files that are not CSV ------------------------------------------------------------------------


def test_csv_with_cr_only_line_endings_is_read(tmp_path):
    a = [(i * 7) % 5 for i in range(40)]
    rows = ["a,b,y"] + [f"{v},{v * 0.5},{'x' if i % 2 else 'z'}" for i, v in enumerate(a)]
    f = tmp_path / "mac.csv"
    f.write_bytes("\r".join(rows).encode() + b"\r")
    table = load_table(path=f, label="y")
    assert len(table.df) == 40
    assert table.df["a"].tolist() == a


@pytest.mark.parametrize(
    "kind, make, expected",
    [
        ("gzip", lambda src: gzip.compress(src.read_bytes()), "gzip-compressed"),
        ("elf", lambda src: Path(shutil.which("ls")).read_bytes()[:100_000], "executable (ELF)"),
        ("nul", lambda src: b"a,b\n1,\x002\n", "binary file"),
        ("zip", lambda src: b"PK\x03\x04" + b"\x00" * 50, "zip archive"),
    ],
)
def test_binary_file_named_csv_is_one_line(tmp_path, data_dir, kind, make, expected):
    f = tmp_path / f"{kind}.csv"
    f.write_bytes(make(data_dir / "nsl-kdd" / "KDDTest-21.txt"))
    line = error_line(invoke("train", "--plugin", "tabular", "--data", str(f), "--label", "y", "--out", str(tmp_path / "r")))
    assert expected in line
    with pytest.raises(AdvgenError, match=expected.split(" ")[0]):
        load_table(path=f)


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_data_that_is_no_regular_file_says_what_it_is(tmp_path, storage):
    """A folder, a device or a pipe was 'data file not found' (and /dev/zero would be read for ever)."""
    (tmp_path / "folder.csv").mkdir()
    cases = [(tmp_path / "folder.csv", "is a folder"), (Path("/dev/zero"), "not a regular file"),
             (tmp_path / "missing.csv", "not found|No such file")]
    for path, expected in cases:
        result = invoke("train", "--plugin", "tabular", "--data", str(path), "--label", "x", "--steps", "1",
                        "--out", str(tmp_path / "run"), "--option", f"storage={storage}")
        assert re.search(expected, error_line(result)), path


def test_a_column_that_is_partly_words_gets_a_note(tmp_path):
    n = 300
    values = [str(i % 40) if i % 3 else f"word{i % 30}" for i in range(n)]
    f = tmp_path / "mixed.csv"
    f.write_text("mixed,other,y\n" + "\n".join(f"{v},{i % 5},{'a' if i % 2 else 'b'}" for i, v in enumerate(values)) + "\n")
    table = load_table(path=f, label="y")
    notes = [note for note in table.notes if note.startswith("mixed ")]
    assert notes and "67% numbers" in notes[0] and "categorical" in notes[0] and "schema" in notes[0], table.notes


# --- absurd arguments -------------------------------------------------------------------------------


def test_absurd_latent_size_is_refused_before_allocating(tmp_path):
    toml = tmp_path / "z.toml"
    toml.write_text('plugin = "curves"\nz_dim = 1e8\n')
    line = error_line(invoke("train", "--config", str(toml), "--out", str(tmp_path / "r")))
    assert "z_dim must be at most" in line
    line = error_line(invoke("train", "--plugin", "curves", "--batch-size", "1000000", "--z-dim", "1000", "--out", str(tmp_path / "r")))
    assert "batch_size x z_dim" in line


def test_plugin_that_is_not_a_string_is_one_line(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text("plugin = 5\n")
    line = error_line(invoke("train", "--config", str(toml), "--out", str(tmp_path / "r")))
    assert "plugin" in line


@pytest.mark.parametrize("spec", ["./nope", ".x", "plugins/missing", "..", "a/b.py"])
def test_a_plugin_path_that_is_not_there_is_one_line(tmp_path, spec):
    # the audit: "./nope" and ".x" fell through to importlib, whose TypeError was a traceback
    line = error_line(invoke("train", "--plugin", spec, "--steps", "1", "--out", str(tmp_path / "r")))
    assert "plugin" in line and spec in line


def test_threads_are_bounded_by_the_cores(tmp_path):
    line = error_line(invoke("train", "--plugin", "curves", "--threads", "100000", "--out", str(tmp_path / "r")))
    assert f"threads must be in 0..{available_cores()}" in line
    with pytest.raises(AdvgenError, match="threads"):
        TrainConfig(plugin="curves", threads=-1).validate()


def test_curves_rejects_unknown_and_out_of_range_options(tmp_path):
    assert "unknown curves option" in error_line(train_curves(tmp_path / "a", "--option", "bogus=1"))
    assert "hidden must be an integer" in error_line(train_curves(tmp_path / "b", "--option", "hidden=1e9"))
    assert "hidden must be an integer" in error_line(train_curves(tmp_path / "c", "--option", "hidden=nan"))


def test_label_with_too_many_classes_names_the_real_flag(tmp_path):
    f = tmp_path / "ids.csv"
    f.write_text("x,y\n" + "\n".join(f"{i % 7},{i}" for i in range(1500)) + "\n")
    line = error_line(invoke("train", "--plugin", "tabular", "--data", str(f), "--label", "y", "--out", str(tmp_path / "r")))
    assert "--unconditional" in line and "--no-conditional" not in line


def _label_table(path: Path, labels: list[str]) -> Path:
    rng = np.random.default_rng(0)
    rows = [f"{rng.integers(0, 50)},{rng.normal():.3f},{lab}" for lab in labels]
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    return path


def test_an_identifier_chosen_as_label_is_one_line(tmp_path):
    # 120 of 200 rows have a label of their own: far under the 1000 classes conditioning allows
    f = _label_table(tmp_path / "ids.csv", [f"id{i}" for i in range(120)] + ["common"] * 80)
    line = error_line(invoke("train", "--plugin", "tabular", "--data", str(f), "--label", "y", "--steps", "2",
                             "--n-samples", "0", "--out", str(tmp_path / "r")))
    assert line == (
        "Error: label column 'y' looks like an identifier, not a class: 120 of its 200 rows carry a value no "
        "other row has (pick another --label, or train with --unconditional)"
    )
    assert not (tmp_path / "r").exists()
    # half the rows is not more than half: a table of many small classes still trains
    from advgen_tabular.domain import TabularDomain

    half = load_table(path=_label_table(tmp_path / "half.csv", [f"id{i}" for i in range(100)] + ["common"] * 100), label="y")
    data = TabularDomain().encode_table(half, TrainConfig(plugin="tabular", seed=0))
    assert len(data.spec["conditions"]["classes"]) == 101


def test_a_label_with_one_class_trains_with_a_note(tmp_path):
    f = _label_table(tmp_path / "one.csv", ["attack"] * 100)
    result = invoke("train", "--plugin", "tabular", "--data", str(f), "--label", "y", "--steps", "2", "--batch-size", "16",
                    "--n-samples", "0", "--threads", "1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "one class" in line]
    assert notes == ["note: label y has one class (attack): the run is in effect unconditional"], result.output


def test_classes_with_few_rows_get_one_note(tmp_path):
    f = _label_table(tmp_path / "few.csv", ["normal"] * 190 + ["spy"] + ["warez"] * 4 + ["scan"] * 5)
    result = invoke("train", "--plugin", "tabular", "--data", str(f), "--label", "y", "--steps", "2", "--batch-size", "16",
                    "--n-samples", "0", "--threads", "1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "fewer than" in line]
    assert notes == ["note: 2 class(es) of y have fewer than 5 rows (spy: 1, warez: 4): their samples can only repeat "
                     "or blur those rows (evaluate's memorisation figures show which)"], result.output


# --- paths -------------------------------------------------------------------------------------------


def test_output_paths_under_a_file_are_one_line(tmp_path):
    run = tmp_path / "run"
    assert train_curves(run).exit_code == 0
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    assert "is a file" in error_line(train_curves(blocker))
    error_line(train_curves(blocker / "sub"))
    error_line(invoke("sample", str(run), "-n", "5", "-o", str(blocker / "x.csv")))
    error_line(invoke("export", str(run), "-o", str(blocker / "m.onnx")))
    assert blocker.read_text() == "keep me"


def test_an_os_error_anywhere_is_one_line(tmp_path, monkeypatch):
    """The command line's last net: a disk error a command did not name itself is still one line."""
    run = tmp_path / "run"
    assert train_curves(run).exit_code == 0

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.csv"))

    import advgen.api

    monkeypatch.setattr(advgen.api, "load_checkpoint", full)
    line = error_line(invoke("sample", str(run), "-n", "5", "-o", str(tmp_path / "x.csv")))
    assert line == f"Error: disk full while writing {tmp_path / 'x.csv'}"


# --- arbitrary input: a result or an AdvgenError -----------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_as_csv(tmp_path, data):
    f = tmp_path / "fuzz.csv"
    f.write_bytes(data)
    try:
        load_table(path=f)
    except AdvgenError:
        pass


CELL = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "a", "b", "NaN", "inf", '"', "x,y", " ", "-", "1e400"]),
)


@FUZZ
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.lists(st.text(string.ascii_letters + " ,;\"", min_size=0, max_size=6), min_size=k, max_size=k),
            st.lists(st.lists(CELL, min_size=k, max_size=k), min_size=0, max_size=12),
            st.sampled_from([",", ";", "\t"]),
            st.sampled_from(["\n", "\r\n", "\r"]),
        )
    ),
    st.booleans(),
)
def test_arbitrary_tables_as_csv_and_parquet(tmp_path, table, as_parquet):
    header, rows, sep, eol = table
    text = eol.join([sep.join(header)] + [sep.join(r) for r in rows]) + eol
    f = tmp_path / "t.csv"
    f.write_text(text)
    if as_parquet:
        import pandas as pd

        try:
            df = pd.read_csv(f, sep=sep, dtype=str)
        except Exception:
            return  # pandas itself cannot make a frame of it: nothing to write as Parquet
        f = tmp_path / "t.parquet"
        df.to_parquet(f)
    try:
        load_table(path=f, label=header[-1].strip() or None)
    except AdvgenError:
        pass


TOML_VALUE = st.recursive(
    st.one_of(st.integers(-10, 10**20), st.floats(), st.text(max_size=8), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


def _toml(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else ("nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(st.dictionaries(st.sampled_from(["label", "columns", "categories", "feature_groups", "other"]), TOML_VALUE, max_size=4))
def test_arbitrary_schema_toml(tmp_path, doc):
    f = tmp_path / "schema.toml"
    f.write_text("\n".join(f"{k} = {_toml(v)}" for k, v in doc.items()) + "\n")
    try:
        read_schema_file(f)
    except AdvgenError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["plugin", "steps", "z_dim", "seed", "threads", "lr_g", "ema", "options", "batch_size", "bogus"]), TOML_VALUE, max_size=4))
def test_arbitrary_run_toml(doc):
    try:
        TrainConfig.from_dict(doc).validate()
    except AdvgenError:
        pass


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tab") / "run"
    f = out.parent / "t.csv"
    rng = np.random.default_rng(0)
    f.write_text(
        "a,b,proto,y\n"
        + "\n".join(f"{rng.integers(0, 9)},{rng.random():.3f},{rng.choice(['tcp', 'udp'])},{rng.choice(['n', 'x', 'z'])}" for _ in range(200))
        + "\n"
    )
    result = invoke("train", "--plugin", "tabular", "--data", str(f), "--label", "y", "--steps", "3", "--batch-size", "32",
                    "--n-samples", "0", "--threads", "1", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    from advgen.api import load_run

    return load_run(out)


@FUZZ
@given(st.one_of(st.text(max_size=30), st.text(alphabet="=,yxnz ab", max_size=20),
                 st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers()), max_size=3)))
def test_arbitrary_condition_strings(tabular_run, condition):
    try:
        probs = tabular_run.condition_probs(condition)
    except AdvgenError:
        return
    assert probs is not None and np.isclose(probs.sum(), 1.0) and (probs >= 0).all()


def test_read_table_of_samples_handles_binary_and_cr_only_files(tmp_path):
    from advgen.io import read_table

    f = tmp_path / "s.csv"
    f.write_bytes(b"a,b\r1,2\r3,4\r")
    assert read_table(f).to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    f.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with pytest.raises(AdvgenError, match="gzip-compressed"):
        read_table(f)
    f.write_bytes(b'a,b\n"1,2\n')
    with pytest.raises(AdvgenError):
        read_table(f)


def test_parquet_with_a_stored_index_of_repeated_labels_loads(tmp_path):
    """Found by the property test above: pandas stores a frame's index in Parquet; repeated labels
    broke cleaning with a reindex traceback."""
    import pandas as pd

    df = pd.DataFrame({"a": ["1", "2", "3"], "y": ["x", "z", "x"]}, index=["k", "k", "j"])
    f = tmp_path / "t.parquet"
    df.to_parquet(f)
    table = load_table(path=f, label="y")
    assert table.df["a"].tolist() == [1, 2, 3]


def test_a_header_with_a_quoted_newline_is_read_whole(tmp_path):
    # the audit: a pandas-written header with "c\nd" as a column name was refused ("rows have more fields")
    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=40), "c\nd": rng.integers(0, 3, 40), "y": rng.choice(["p", "q"], 40)}).to_csv(
        tmp_path / "nl.csv", index=False)
    assert list(load_table(path=str(tmp_path / "nl.csv"), label="y").df.columns) == ["a", "c\nd", "y"]


def test_a_header_longer_than_the_limit_is_refused_not_cut(tmp_path):
    # the audit: a 1,000,001-column header was cut at 1 MiB and reported as "rows have more fields than its
    # 144961 columns"
    (tmp_path / "wide.csv").write_text(",".join(f"c{i}" for i in range(200_000)) + ",y\n" + "1," * 200_000 + "p\n")
    line = error_line(invoke("train", "--plugin", "tabular", "--data", str(tmp_path / "wide.csv"), "--label", "y",
                             "--out", str(tmp_path / "r")))
    assert "longer than 1 MiB" in line


def test_values_near_the_float_limit_give_one_line_and_no_warning(tmp_path):
    # the audit: numpy's "overflow encountered in scalar subtract" printed a second line before the error
    import warnings

    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame({"a": np.where(rng.random(60) < 0.5, 1e308, -1e308), "y": rng.choice(["p", "q"], 60)}).to_csv(
        tmp_path / "huge.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a warning now fails the command
        line = error_line(invoke("train", "--plugin", "tabular", "--data", str(tmp_path / "huge.csv"), "--label", "y",
                                 "--steps", "1", "--out", str(tmp_path / "r")))
    assert "beyond the float32 range" in line
