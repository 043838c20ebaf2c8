"""Sample files keep the training file's columns as they were: in its order (a constant column the
loader dropped comes back where it was, not second to last) and with an integer label as integers
(Parquet stored a 0/1 label as the text "0"/"1", so ``(d.Malware == 1).sum()`` was 0). Checked for
``advgen sample``, ``advgen-runtime sample`` and ``advgen augment``, and for runs and manifests from
before the spec recorded either (they load and sample as they did)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from advgen.cli import cli

COLUMNS = ["e_magic", "NumberOfSections", "SizeOfCode", "Characteristics", "Malware"]


def _pe_table(n: int = 200) -> pd.DataFrame:
    """A PE-header table as the audit had it: integer columns, a constant first, an int 0/1 label last."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "e_magic": 23117,
            "NumberOfSections": rng.integers(1, 9, n) + y,
            "SizeOfCode": rng.integers(0, 5000, n) * (1 + y),
            "Characteristics": rng.integers(0, 300, n),
            "Malware": y,
        }
    )


@pytest.fixture(scope="module")
def pe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-step conditional run on the table, and its ONNX export."""
    from advgen.api import train
    from advgen_export.onnx_export import export

    root = tmp_path_factory.mktemp("column-order")
    data = root / "pe.csv"
    _pe_table().to_csv(data, index=False)
    run = train({"plugin": "tabular", "data": str(data), "label": "Malware", "steps": 2, "batch_size": 16,
                 "n_samples": 0, "seed": 0, "threads": 1, "out": str(root / "run")})
    model = export(run, root / "model.onnx").model_path
    return {"root": root, "data": data, "run": root / "run", "model": model}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _assert_like_input(df: pd.DataFrame, extra: list[str] | None = None) -> None:
    # both at once: the order and the label's type were separate bugs
    assert (list(df.columns), str(df["Malware"].dtype)) == (COLUMNS + (extra or []), "int64")
    assert set(df["Malware"].unique()) <= {0, 1}
    assert (df["e_magic"] == 23117).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_advgen_sample_keeps_the_input_order_and_an_integer_label(pe: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"s{suffix}"
    result = CliRunner().invoke(cli, ["sample", str(pe["run"]), "-n", "40", "-o", str(out), "--seed", "0"])
    assert result.exit_code == 0, result.output
    _assert_like_input(_read(out))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_runtime_sample_keeps_the_input_order_and_an_integer_label(pe: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    from advgen_export.cli import main

    out = tmp_path / f"o{suffix}"
    assert main(["sample", str(pe["model"]), "-n", "40", "-o", str(out), "--seed", "0"]) == 0
    _assert_like_input(_read(out))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_augment_keeps_the_input_order_and_integer_labels_of_real_rows_too(
    pe: dict[str, Any], tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"aug{suffix}"
    result = CliRunner().invoke(cli, ["augment", str(pe["run"]), "--data", str(pe["data"]), "--label", "Malware",
                                      "--classes", "0", "--balance", "-o", str(out)])
    assert result.exit_code == 0, result.output
    df = _read(out)
    _assert_like_input(df, ["synthetic"])
    real = _pe_table()
    rows = df[df["synthetic"] == 0].reset_index(drop=True)
    assert rows["Malware"].tolist() == real["Malware"].tolist()
    assert int((df["Malware"] == 1).sum()) == int((real["Malware"] == 1).sum())  # only class 0 was added
    assert (df.loc[df["synthetic"] == 1, "Malware"] == 0).all()


def test_the_manifest_records_order_and_integer_columns(pe: dict[str, Any]) -> None:
    import json

    from advgen_export.manifest import manifest_path

    sample = json.loads(manifest_path(pe["model"]).read_text())["sample"]
    assert sample["columns"] == COLUMNS and sample["integer_columns"] == ["Malware"]


def test_the_loader_records_the_file_order_and_which_categoricals_were_integers(tmp_path: Path) -> None:
    from advgen_datasets import load_table

    df = _pe_table(60)[["NumberOfSections", "Malware", "e_magic", "SizeOfCode", "Characteristics"]]
    df.insert(2, "Proto", np.where(df["Malware"] == 1, 6, 17))
    df["Host"] = np.where(df["Malware"] == 1, "a", "b")
    (tmp_path / "schema.toml").write_text('[columns.Proto]\nkind = "categorical"\n')
    df.to_csv(tmp_path / "t.csv", index=False)
    t = load_table(path=tmp_path / "t.csv", label="Malware", schema_file=tmp_path / "schema.toml")
    assert t.source_order == list(df.columns) and set(t.constants) == {"e_magic"}
    assert t.integer_columns == ["Proto", "Malware"]  # Host is text; numeric kinds are integers already
    # Parquet has types: an integer label is one, text that spells integers stays text
    df.to_parquet(tmp_path / "int.parquet")
    assert load_table(path=tmp_path / "int.parquet", label="Malware").integer_columns == ["Malware"]
    df.astype({"Malware": str}).to_parquet(tmp_path / "text.parquet")
    assert load_table(path=tmp_path / "text.parquet", label="Malware").integer_columns == []
    # labels an integer cast would change ("07", "1.0") are not integers
    df.assign(Malware=np.where(df["Malware"] == 1, "07", "1")).to_csv(tmp_path / "z.csv", index=False)
    assert load_table(path=tmp_path / "z.csv", label="Malware").integer_columns == []


def test_a_label_in_the_middle_of_the_file_stays_there(tmp_path: Path) -> None:
    from advgen.api import train

    order = ["NumberOfSections", "Malware", "e_magic", "SizeOfCode", "Characteristics"]
    _pe_table(120)[order].to_parquet(tmp_path / "mid.parquet")
    run = train({"plugin": "tabular", "data": str(tmp_path / "mid.parquet"), "label": "Malware", "steps": 1,
                 "batch_size": 16, "n_samples": 0, "seed": 0, "threads": 1, "out": str(tmp_path / "run")})
    run.write_samples(tmp_path / "s.parquet", 10, seed=0)
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert list(df.columns) == order and df["Malware"].dtype == np.int64


def test_a_run_and_manifest_from_before_the_new_fields_still_load_and_sample(
    pe: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint whose spec lacks column_order and integer_columns samples as it did (features,
    constants, label; the label as text); its export has no integer_columns and the runtime reads it."""
    from advgen.api import load_run
    from advgen.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
    from advgen_export.cli import main
    from advgen_export.manifest import manifest_path
    from advgen_export.onnx_export import export

    old = tmp_path / "old-run"
    shutil.copytree(pe["run"], old)
    payload = load_checkpoint(old / CHECKPOINT_NAME)
    spec = copy.deepcopy(payload["spec"])
    assert spec.pop("column_order") == COLUMNS and spec.pop("integer_columns") == ["Malware"]
    payload["spec"] = spec
    save_checkpoint(old / CHECKPOINT_NAME, payload)

    before = ["NumberOfSections", "SizeOfCode", "Characteristics", "e_magic", "Malware"]
    result = CliRunner().invoke(cli, ["sample", str(old), "-n", "20", "-o", str(tmp_path / "s.parquet")])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert list(df.columns) == before and df["Malware"].map(type).eq(str).all()

    model = export(load_run(old), tmp_path / "old.onnx").model_path
    import json

    sample = json.loads(manifest_path(model).read_text())["sample"]
    assert "integer_columns" not in sample and sample["columns"] == before
    capsys.readouterr()
    assert main(["sample", str(model), "-n", "20", "-o", str(tmp_path / "o.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert list(df.columns) == before and df["Malware"].map(type).eq(str).all()


def test_the_manifest_check_refuses_integer_columns_that_cannot_hold_integers(pe: dict[str, Any]) -> None:
    import json

    from advgen_export.manifest import ModelError, manifest_path, validate_manifest

    manifest = json.loads(manifest_path(pe["model"]).read_text())
    validate_manifest(manifest)
    cases = {
        "Nope": "is none of sample.columns",
        "SizeOfCode": "is not a categorical column",
        "e_magic": "is not a categorical column",
    }
    for name, message in cases.items():
        bad = copy.deepcopy(manifest)
        bad["sample"]["integer_columns"] = [name]
        with pytest.raises(ModelError, match=message):
            validate_manifest(bad)
    bad = copy.deepcopy(manifest)
    bad["conditions"]["classes"][0] = "benign"
    bad["conditions"]["selectors"]["Malware"] = {"benign": [0], "1": [1]}
    with pytest.raises(ModelError, match='"benign", which is not an integer'):
        validate_manifest(bad)
    bad = copy.deepcopy(manifest)
    bad["sample"]["integer_columns"] = ["Malware", "Malware"]
    with pytest.raises(ModelError, match="integer_columns"):
        validate_manifest(bad)


def test_integers_restored_changes_only_text_that_is_all_plain_integers() -> None:
    from advgen.writers import integers_restored

    df = pd.DataFrame({"a": ["0", "1", "-7"], "b": ["0", "07", "1"], "c": ["1", "1.0", "2"], "d": [1.5, 2.0, 3.0],
                       "e": ["1", "2", "99999999999999999999"], "f": ["1", None, "2"]})
    out = integers_restored(df, ["a", "b", "c", "d", "e", "f", "missing"])
    assert out["a"].tolist() == [0, 1, -7] and out["a"].dtype == np.int64
    for col in "bcdef":
        assert out[col].dtype == df[col].dtype
    assert df["a"].tolist() == ["0", "1", "-7"]  # the caller's frame is unchanged
