"""Tables larger than memory: streamed fit, encoded rows on disk, batches drawn by index, resume, bad input.

The streamed path is forced with ``--option storage=disk`` on small files; ``small_sizes`` shrinks the
sample and the batches the memory budget would give, so that a file of 20,000 rows is read in 20
batches and fitted on a sample of 300 rows: a category in 3 of its rows is then missed by the sample
about 19 times in 20, and found only through the exact counts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from advgen.api import train
from advgen.cli import cli
from advgen.config import TrainConfig
from advgen.domain import RealData
from advgen.engine import BatchSampler
from advgen.errors import AdvgenError, InvalidDataError
from advgen_tabular import streamed
from advgen_tabular.census import take_census
from advgen_tabular.domain import TabularDomain
from advgen_tabular.rowstore import META_NAME, ROWS_NAME, RowLayout, RowStore, RowStoreWriter
from advgen_tabular.transform import Segment, TableTransform

DOMAIN = TabularDomain()
N = 20_000
RARE_ROWS = (13_001, 17_777, 19_998)  # service "gopher"
RARE_LABEL_ROWS = (15_000, 19_500)  # label "rootkit"
MAX_ROW = 18_000  # the one row whose bytes is 10^9


@pytest.fixture
def small_sizes(monkeypatch):
    """The sizes a tiny memory budget would give: a 300-row sample, 1,000-row batches."""
    monkeypatch.setattr(
        streamed.Sizes, "for_budget", classmethod(lambda cls, budget, n: cls(budget, 300, 1_000, 1 << 20))
    )


def rare_table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "proto": rng.choice(["tcp", "udp", "icmp"], N),
            "service": rng.choice(["http", "smtp", "dns", "ftp"], N),
            "bytes": rng.integers(0, 5_000, N),
            "rate": np.round(rng.random(N), 2),
            "urgent": rng.integers(0, 2, N),
            "label": rng.choice(["normal", "neptune"], N, p=[0.7, 0.3]),
        }
    )
    df.loc[list(RARE_ROWS), "service"] = "gopher"
    df.loc[list(RARE_LABEL_ROWS), "label"] = "rootkit"
    df.loc[MAX_ROW, "bytes"] = 1_000_000_000
    return df


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False, row_group_size=4_000)
    else:
        df.to_csv(path, index=False)
    return path


def config(data: Path, out: Path, **options) -> TrainConfig:
    opts = {"storage": "disk", "memory_budget": "2GB", **options}
    return TrainConfig(plugin="tabular").updated(DOMAIN.default_config()).updated(
        {"data": str(data), "label": "label", "out": str(out), "threads": 1, "options": opts}
    )


@pytest.fixture(scope="module")
def nsl_small(tmp_path_factory, data_dir_module):
    """2,000 NSL-KDD rows as a CSV file with a header."""
    from advgen_datasets import load_table

    path = tmp_path_factory.mktemp("nsl") / "nsl2000.csv"
    load_table(dataset="nsl-kdd").df.iloc[:2000].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data_dir_module():
    here = Path(__file__).resolve().parents[1]
    for c in (os.environ.get("ADVGEN_DATA"), str(here.parent / "shared" / "datasets")):
        if c and (Path(c) / "nsl-kdd" / "KDDTrain+_20Percent.txt").is_file():
            os.environ["ADVGEN_DATA"] = c
            return Path(c)
    pytest.fail("NSL-KDD files not found: set ADVGEN_DATA to a folder holding nsl-kdd/KDDTrain+_20Percent.txt")


# --- the streamed fit ------------------------------------------------------------------------------


def test_census_counts_rare_values_exactly_and_keeps_their_rows():
    df = rare_table()
    batches = (df.iloc[a : a + 1_000].reset_index(drop=True) for a in range(0, N, 1_000))
    census = take_census(batches, text_columns=set(), label="label", reservoir=300, seed=0)
    assert census.rows == N and census.reservoir_rows == 300
    assert census.values["service"]["gopher"] == 3 and census.values["label"]["rootkit"] == 2
    sample = census.sample
    assert (sample["service"] == "gopher").any() and (sample["label"] == "rootkit").any()
    assert sample["bytes"].max() == 1e9 and census.numeric["bytes"].max == 1e9
    assert census.numeric["rate"].decimals == 2 and census.numeric["bytes"].integral
    # every combination of the text features is in the sample
    combos = set(map(tuple, df[list(census.combo_columns)].drop_duplicates().to_numpy().tolist()))
    assert census.combo_columns == ("proto", "service")
    assert combos == set(map(tuple, sample[list(census.combo_columns)].drop_duplicates().to_numpy().tolist()))
    assert len(sample) < 600, "the sample is the reservoir and a few witness rows, not the file"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_fit_keeps_a_category_and_a_label_seen_in_a_few_rows(tmp_path, small_sizes, suffix):
    path = write(rare_table(), tmp_path / f"rare{suffix}")
    data = DOMAIN.load_data(config(path, tmp_path / "run"))
    assert not isinstance(data.x, torch.Tensor) and data.x.shape[0] == N
    transform = TableTransform.from_dict(data.spec["transform"])
    assert "gopher" in transform.vocabulary("service")
    assert transform.plan("bytes")["max"] == 1e9
    cond = data.spec["conditions"]
    counts = dict(zip(cond["classes"], cond["counts"]))
    assert counts["rootkit"] == 2 and sum(counts.values()) == N
    # the two rootkit rows are the store's rows of that class, and decode to the file's rows
    start = sum(c for k, c in counts.items() if k < "rootkit")
    cls = cond["classes"].index("rootkit")
    rows = DOMAIN.decode(data.x.rows(np.arange(start, start + 2)), np.array([cls, cls]), data.spec)
    expected = rare_table().iloc[list(RARE_LABEL_ROWS)]
    assert rows["service"].tolist() == expected["service"].tolist()
    assert rows["bytes"].tolist() == expected["bytes"].tolist()


def test_disk_path_encodes_a_small_file_as_the_memory_path(tmp_path, nsl_small):
    mem = DOMAIN.load_data(config(nsl_small, tmp_path / "mem", storage="memory"))
    disk = DOMAIN.load_data(config(nsl_small, tmp_path / "disk", memory_budget="8GB"))  # one batch
    assert json.dumps(disk.spec["transform"], sort_keys=True) == json.dumps(mem.spec["transform"], sort_keys=True)
    assert disk.spec["rules"] == mem.spec["rules"] and disk.spec["conditions"] == mem.spec["conditions"]
    order = torch.argsort(mem.cond, stable=True)  # the store groups rows by class, in file order
    assert torch.equal(disk.x.rows(np.arange(disk.x.shape[0])), mem.x[order])
    assert disk.samples.equals(mem.samples)
    assert not (tmp_path / "mem" / ROWS_NAME).exists()


def test_disk_path_in_batches_decodes_to_the_same_rows(tmp_path, nsl_small, small_sizes):
    mem = DOMAIN.load_data(config(nsl_small, tmp_path / "mem", storage="memory"))
    disk = DOMAIN.load_data(config(nsl_small, tmp_path / "disk"))  # 2 batches, fitted on 300 rows + witnesses
    classes = np.sort(mem.cond.numpy())
    x_disk = disk.x.rows(np.arange(disk.x.shape[0]))
    order = torch.argsort(mem.cond, stable=True)
    got = DOMAIN.decode(x_disk, classes, disk.spec)
    want = mem.samples.iloc[order.numpy()].reset_index(drop=True)
    for c in ("protocol_type", "service", "flag", "label", "duration", "count", "logged_in", "dst_host_count"):
        assert got[c].tolist() == want[c].tolist(), c


def test_auto_storage_follows_the_budget(tmp_path, nsl_small, monkeypatch):
    data = DOMAIN.load_data(config(nsl_small, tmp_path / "small", storage="auto"))
    assert isinstance(data.x, torch.Tensor)
    monkeypatch.setattr(streamed, "CELL_BYTES", 10**6)  # as if each cell took a megabyte in memory
    data = DOMAIN.load_data(config(nsl_small, tmp_path / "big", storage="auto", memory_budget="1GiB"))
    assert not isinstance(data.x, torch.Tensor) and (tmp_path / "big" / ROWS_NAME).is_file()
    assert any("more than the memory budget" in n for n in data.notes)


# --- the encoded rows on disk ----------------------------------------------------------------------


def _store(folder: Path, class_of_row: np.ndarray, k: int) -> RowStore:
    """A store of rows [row id, one-hot class] written in two unsorted batches."""
    layout = RowLayout.from_segments([Segment("id", 0, 1, "linear"), Segment("c", 1, 1 + k, "softmax")])
    counts = np.bincount(class_of_row, minlength=k).tolist()
    writer = RowStoreWriter(folder, layout, len(class_of_row), counts)
    x = np.zeros((len(class_of_row), 1 + k), dtype=np.float32)
    x[:, 0] = np.arange(len(class_of_row))
    x[np.arange(len(class_of_row)), 1 + class_of_row] = 1
    half = len(x) // 2
    writer.write(layout.pack(x[:half]), class_of_row[:half])
    writer.write(layout.pack(x[half:]), class_of_row[half:])
    writer.close({})
    return RowStore(folder, layout, resident_bytes=1 << 20)


def test_batches_are_drawn_by_index_from_the_memory_map(tmp_path):
    rng = np.random.default_rng(0)
    cls = rng.choice(3, 1_000, p=[0.9, 0.09, 0.01])
    store = _store(tmp_path, cls, 3)
    ids = store.rows(np.arange(1_000))[:, 0].numpy().astype(int)
    assert ids.tolist() == np.argsort(cls, kind="stable").tolist(), "grouped by class, file order within"
    idx = np.array([999, 0, 500, 500])
    assert torch.equal(store.rows(idx), store.rows(np.arange(1_000))[idx])
    spec = {"shape": [4], "conditions": {"name": "y", "classes": ["a", "b", "c"], "counts": store.class_counts}}
    sampler = BatchSampler(RealData(x=store, spec=spec), torch.device("cpu"), "uniform", True)
    torch.manual_seed(0)
    rows, c = sampler.draw(3_000)
    assert rows.shape == (3_000, 4)
    assert torch.equal(rows[:, 1:].argmax(dim=1), c), "each drawn row belongs to its drawn class"
    assert (c == 2).float().mean().item() == pytest.approx(1 / 3, abs=0.05)
    assert (cls[rows[:, 0].long().numpy()] == c.numpy()).all()
    plain = BatchSampler(RealData(x=store, spec=dict(spec, conditions=None)), torch.device("cpu"), "log", False)
    rows, c = plain.draw(64)
    assert c is None and rows.shape == (64, 4)
    with pytest.raises(IndexError):
        store.rows(np.array([1_000]))


def _rss_file_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@pytest.mark.skipif(_rss_file_kib() is None, reason="needs Linux's /proc/self/status")
def test_reading_the_memory_map_keeps_resident_memory_bounded(tmp_path):
    layout = RowLayout.from_segments([Segment(f"v{i}", i, i + 1, "linear") for i in range(16)])
    n = 1 << 20  # 64 MiB of rows
    writer = RowStoreWriter(tmp_path, layout, n, None)
    for a in range(0, n, 1 << 16):
        writer.write(layout.pack(np.full((1 << 16, 16), 1.0, dtype=np.float32)))
    writer.close({})
    store = RowStore(tmp_path, layout, resident_bytes=4 << 20)
    before = _rss_file_kib()
    rng = np.random.default_rng(0)
    peak = before
    for _ in range(200):  # touches every page of the file several times over
        store.rows(rng.integers(0, n, 512))
        peak = max(peak, _rss_file_kib())
    assert peak - before < 24 * 1024, f"{(peak - before) / 1024:.0f} MiB of the 64 MiB file stayed resident"


def test_resume_and_overwrite_reuse_the_encoded_rows(tmp_path, nsl_small):
    out = tmp_path / "run"
    lines: list[str] = []
    base = {"plugin": "tabular", "data": str(nsl_small), "label": "label", "out": str(out), "steps": 4,
            "batch_size": 64, "n_samples": 0, "threads": 1, "options": {"storage": "disk", "memory_budget": "2GB"}}
    train(base, progress=False)
    rows = out / ROWS_NAME
    stamp = (rows.stat().st_ino, rows.stat().st_mtime_ns)
    run = train({"steps": 6}, resume=out, progress=False, log=lines.append)
    assert run.summary["steps"] == 6 and run.summary["data_rows"] == 2000
    assert any(line.startswith("note: reused the 2,000 encoded rows") for line in lines)
    assert (rows.stat().st_ino, rows.stat().st_mtime_ns) == stamp, "resuming must not encode again"
    # a run started over in the same folder keeps the rows it reuses (the old run's files go)
    train(dict(base, steps=2), progress=False, overwrite=True)
    assert rows.is_file() and (out / META_NAME).is_file() and (rows.stat().st_ino, rows.stat().st_mtime_ns) == stamp
    # damaged rows are noticed and encoded again
    with rows.open("r+b") as fh:
        fh.seek(8)
        fh.write(np.array([np.nan], dtype="<f4").tobytes())
    lines.clear()
    run = train({"steps": 8}, resume=out, progress=False, log=lines.append)
    assert run.summary["steps"] == 8
    assert any("cannot be reused" in line and "NaN" in line for line in lines), lines


# --- bad input -------------------------------------------------------------------------------------


def error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def train_cli(data: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, [
        "train", "--plugin", "tabular", "--data", str(data), "--label", "label", "--steps", "2", "--batch-size", "32",
        "--n-samples", "0", "--threads", "1", "--out", str(out), "-q", "--option", "storage=disk", *extra,
    ])


@pytest.fixture
def small_blocks(monkeypatch):
    """pyarrow infers a CSV's column types from its first 64 KiB (1,600 rows here), not the whole file."""
    from advgen_tabular import source

    monkeypatch.setattr(source, "_CSV_BLOCK", 64 << 10)


def test_a_short_row_late_in_a_csv_is_one_line(tmp_path, small_sizes, small_blocks):
    path = write(rare_table(), tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    lines[15_001] = ",".join(lines[15_001].split(",")[:-1])  # a row that lost its last field
    path.write_text("\n".join(lines) + "\n")
    line = error_line(train_cli(path, tmp_path / "run"))
    assert "t.csv" in line and "Expected 6 columns, got 5" in line
    assert not (tmp_path / "run" / ROWS_NAME).exists()


def test_text_in_a_numeric_column_late_in_a_csv_names_the_column(tmp_path, small_sizes, small_blocks):
    df = rare_table().astype({"bytes": object})
    df.loc[16_000, "bytes"] = "lots"
    line = error_line(train_cli(write(df, tmp_path / "t.csv"), tmp_path / "run"))
    assert "column 'bytes'" in line and "'lots'" in line


def test_missing_numbers_late_in_the_file_get_the_median(tmp_path, small_sizes):
    df = rare_table().astype({"bytes": float})
    df.loc[[16_000, 16_001], "bytes"] = np.nan
    df.loc[16_002, "bytes"] = np.inf
    data = DOMAIN.load_data(config(write(df, tmp_path / "t.parquet"), tmp_path / "run"))
    data.x.check()  # every stored value is finite
    fill = float(np.round(data.samples["bytes"].median()))
    cond = data.spec["conditions"]
    starts = dict(zip(cond["classes"], np.cumsum(cond["counts"]) - np.asarray(cond["counts"])))
    # rows keep file order within their class: find the three rows among their class's rows
    for row in (16_000, 16_001, 16_002):
        label = df.loc[row, "label"]
        pos = int(starts[label]) + int((df["label"].iloc[:row] == label).sum())
        decoded = DOMAIN.decode(data.x.rows(np.array([pos])), np.array([cond["classes"].index(label)]), data.spec)
        assert decoded["bytes"].iloc[0] == fill
        assert decoded["service"].iloc[0] == df.loc[row, "service"]


def test_a_corrupt_parquet_file_is_one_line(tmp_path):
    path = write(rare_table(), tmp_path / "t.parquet")
    path.write_bytes(path.read_bytes()[:-100])  # the footer is gone
    line = error_line(train_cli(path, tmp_path / "run"))
    assert "t.parquet" in line


def test_bad_budget_and_storage_are_one_line(tmp_path, nsl_small):
    assert "memory_budget" in error_line(train_cli(nsl_small, tmp_path / "a", "--option", "memory_budget=lots"))
    assert "at least 1GiB" in error_line(train_cli(nsl_small, tmp_path / "b", "--option", "memory_budget=10MB"))
    assert "storage must be one of" in error_line(train_cli(nsl_small, tmp_path / "c", "--option", "storage=ssd"))


def test_without_pyarrow_the_disk_path_says_how_to_install_it(tmp_path, nsl_small, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    with pytest.raises(AdvgenError, match=r"pip install 'advgen\[parquet\]'"):
        DOMAIN.load_data(config(nsl_small, tmp_path / "run"))


def test_a_categorical_with_too_many_values_is_one_line(tmp_path, small_sizes, monkeypatch):
    monkeypatch.setattr(streamed, "MAX_LEVELS", 50)
    df = rare_table()
    df["service"] = [f"s{i % 300}" for i in range(N)]
    with pytest.raises(InvalidDataError, match="'service' has more than 50 distinct values"):
        DOMAIN.load_data(config(write(df, tmp_path / "t.csv"), tmp_path / "run"))
