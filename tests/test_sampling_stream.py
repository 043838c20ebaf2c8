"""Sampling at any size (issue 10, issue 13): chunked drawing, streamed files, limits in bytes.

Files written chunk by chunk must equal what in-memory sampling gives for the same seed (with chunks
made small so that a few rows span many of them), a chunk's rows must not depend on the total count,
and every way a write can fail (a full disk, a read-only folder, Ctrl-C, a file too large for the
disk) must leave an earlier file untouched, no temporary file, and one line of error.
"""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from advgen.cli import cli

REPO = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "export"), os.environ.get("PYTHONPATH", "")])
ONE_THREAD = {"threads": 1}


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def small_chunks(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    monkeypatch.setattr("advgen.sampling.CHUNK_ROWS", rows)


# --- runs --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curves_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from advgen.api import train

    out = tmp_path_factory.mktemp("stream") / "curves"
    train({"plugin": "curves", "steps": 5, "n_samples": 0, "out": str(out),
           "options": {"length": 8, "n_real": 128, "hidden": 16}, **ONE_THREAD})
    return out


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from advgen.api import train

    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    n = 300
    kind = rng.choice(["benign", "scan", "flood"], n, p=[0.6, 0.3, 0.1])
    pd.DataFrame({
        "Proto": rng.choice(["tcp", "udp", "icmp"], n),
        "Bytes": rng.integers(0, 5000, n),
        "Rate": rng.integers(0, 101, n) / 100,
        "Label": kind,
    }).to_csv(root / "flows.csv", index=False)
    out = root / "table"
    train({"plugin": "tabular", "data": str(root / "flows.csv"), "label": "Label", "steps": 3, "n_samples": 0,
           "out": str(out), "options": {"hidden": 32, "d_hidden": 32, "n_quantiles": 65}, **ONE_THREAD})
    return out


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from advgen.api import train

    out = tmp_path_factory.mktemp("stream") / "images"
    train({"plugin": "images", "steps": 1, "ema": 0, "n_samples": 0, "out": str(out),
           "options": {"width": 8, "max_images": 200}, **ONE_THREAD})
    return out


def load(run_dir: Path):
    from advgen.api import load_run

    return load_run(run_dir)


# --- streamed files equal in-memory samples ----------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64, 65_536])
def test_streamed_arrays_equal_in_memory_samples(curves_dir: Path, tmp_path: Path, monkeypatch, chunk: int) -> None:
    small_chunks(monkeypatch, chunk)
    run = load(curves_dir)
    reference = run.sample(150, seed=4)
    assert reference.shape == (150, 8)
    for suffix in (".npz", ".npy", ".csv"):
        result = invoke("sample", curves_dir, "-n", 150, "-o", tmp_path / f"s{suffix}", "--seed", 4)
        assert result.exit_code == 0, result.output
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        assert list(data.keys()) == ["x"]
        np.testing.assert_array_equal(data["x"], reference)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy", allow_pickle=False), reference)
    expected = io.StringIO()
    np.savetxt(expected, reference, delimiter=",", fmt="%.6g", header=",".join(f"x{i}" for i in range(8)), comments="")
    assert (tmp_path / "s.csv").read_text() == expected.getvalue()


@pytest.mark.parametrize("chunk", [5, 64])
def test_streamed_tables_equal_in_memory_samples(table_dir: Path, tmp_path: Path, monkeypatch, chunk: int) -> None:
    import pyarrow.parquet as pq

    small_chunks(monkeypatch, chunk)
    monkeypatch.setattr("advgen.writers.TableWriter.ROW_GROUP_ROWS", 10)
    run = load(table_dir)
    reference = run.sample(123, condition="Label=scan", seed=2)
    for suffix in (".csv", ".parquet"):
        result = invoke("sample", table_dir, "-n", 123, "-o", tmp_path / f"t{suffix}", "--seed", 2, "-c", "Label=scan")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "t.csv").read_text() == reference.to_csv(index=False)
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back.columns) == list(reference.columns) and len(back) == 123
    for column in reference.columns:
        assert back[column].astype(str).tolist() == reference[column].astype(str).tolist(), column
    # streamed: rows gathered into row groups of ROW_GROUP_ROWS, whatever the chunks
    groups = pq.ParquetFile(tmp_path / "t.parquet").metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == _groups(123, chunk, 10)


def _groups(n: int, chunk: int, least: int) -> list[int]:
    """Row-group sizes when pieces of ``chunk`` rows are gathered until at least ``least``."""
    sizes, pending = [], 0
    for start in range(0, n, chunk):
        pending += min(chunk, n - start)
        if pending >= least:
            sizes.append(pending)
            pending = 0
    return sizes + ([pending] if pending else [])


def test_streamed_images_equal_in_memory_samples(images_dir: Path, tmp_path: Path, monkeypatch) -> None:
    small_chunks(monkeypatch, 9)
    run = load(images_dir)
    reference = run.sample(40, seed=3)
    run.write_samples(tmp_path / "i.npz", 40, seed=3)
    with np.load(tmp_path / "i.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(data["x"], reference.x)
        assert data["y"].tolist() == reference.y.tolist()
    run.write_samples(tmp_path / "folder", 40, seed=3)
    pngs = sorted((tmp_path / "folder").rglob("*.png"))
    assert len(pngs) == 40 and json.loads((tmp_path / "folder" / ".advgen-images.json").read_text()) == {"images": 40}
    first = next(p for p in pngs if p.name == "000000.png")
    assert first.parent.name == reference.y[0]
    run.write_samples(tmp_path / "grid.png", 40, seed=3)
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runtime_streams_what_it_samples_in_memory(curves_dir: Path, table_dir: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    from advgen_export.cli import main
    from advgen_export.onnx_export import export
    from advgen_export.runtime import load as load_model

    export(load(curves_dir), tmp_path / "curves.onnx")
    export(load(table_dir), tmp_path / "table.onnx")
    small_chunks(monkeypatch, 16)
    curves = load_model(tmp_path / "curves.onnx")
    whole = curves.sample(100, seed=9)
    for suffix in (".npz", ".npy", ".csv"):
        assert main(["sample", str(tmp_path / "curves.onnx"), "-n", "100", "-o", str(tmp_path / f"c{suffix}"),
                     "--seed", "9"]) == 0
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(data["curves"], whole)
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), whole)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1), whole, rtol=1e-5, atol=1e-6)
    table = load_model(tmp_path / "table.onnx")
    rows = table.sample(77, condition="Label=flood", seed=1)
    assert main(["sample", str(tmp_path / "table.onnx"), "-n", "77", "-o", str(tmp_path / "t.csv"),
                 "--seed", "1", "--condition", "Label=flood"]) == 0
    assert (tmp_path / "t.csv").read_text() == rows.to_csv(index=False)
    table.write_samples(tmp_path / "t.parquet", 77, "Label=flood", 1)
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back.astype(str).values.tolist() == rows.astype(str).values.tolist()
    # the in-memory path writes the same file as the streamed one
    table.save(table.generate(77, "Label=flood", 1), tmp_path / "t2.csv")
    assert (tmp_path / "t2.csv").read_text() == (tmp_path / "t.csv").read_text()


# --- seeds and chunks --------------------------------------------------------------------------------


def test_same_seed_same_rows_and_other_seeds_differ(curves_dir: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        assert invoke("sample", curves_dir, "-n", 300, "-o", tmp_path / f"{name}.npy", "--seed", seed).exit_code == 0
    a, b, c = (np.load(tmp_path / f"{name}.npy") for name in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_a_chunk_rows_do_not_depend_on_the_total(curves_dir: Path, table_dir: Path, monkeypatch) -> None:
    """Chunk k is drawn from (seed, k) alone, so the whole chunks of any two counts agree exactly, and
    so do the classes of a partial one (the generator may round differently on a shorter batch)."""
    small_chunks(monkeypatch, 16)
    curves = load(curves_dir)
    short, long = curves.sample(40, seed=6), curves.sample(1000, seed=6)
    np.testing.assert_array_equal(short[:32], long[:32])  # chunks 0 and 1
    np.testing.assert_allclose(short[32:], long[32:40], rtol=1e-5, atol=1e-6)
    # chunk 3 alone, from a sample that starts elsewhere, is the same: what N processes would write
    np.testing.assert_array_equal(curves.sample(64, seed=6)[48:64], long[48:64])
    table = load(table_dir)
    short, long = table.sample(21, seed=6), table.sample(500, seed=6)
    assert short["Label"].tolist() == long["Label"][:21].tolist()
    assert short.head(16).equals(long.head(16))


def test_runtime_chunk_rows_do_not_depend_on_the_total(table_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from advgen_export.onnx_export import export
    from advgen_export.runtime import load as load_model

    export(load(table_dir), tmp_path / "m.onnx")
    small_chunks(monkeypatch, 16)
    model = load_model(tmp_path / "m.onnx")
    z_short, c_short = model.draw_inputs(21, seed=5)
    z_long, c_long = model.draw_inputs(300, seed=5)
    np.testing.assert_array_equal(z_short, z_long[:21])
    np.testing.assert_array_equal(c_short, c_long[:21])  # classes too, though drawn after the latents
    assert model.sample(21, seed=5).equals(model.sample(300, seed=5).head(21))


@pytest.mark.parametrize("seed", ["-1", str(2**63), "99999999999999999999"])
def test_bad_seeds_are_one_line(curves_dir: Path, tmp_path: Path, seed: str) -> None:
    line = one_error_line(invoke("sample", curves_dir, "-n", 5, "-o", tmp_path / "s.csv", "--seed", seed))
    assert "--seed" in line
    line = one_error_line(invoke("train", "--plugin", "curves", "--seed", seed, "--out", tmp_path / "r"))
    assert "--seed" in line
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "r").exists()


def test_bad_seed_in_toml_and_api(curves_dir: Path, tmp_path: Path) -> None:
    from advgen.errors import AdvgenError

    toml = tmp_path / "run.toml"
    toml.write_text('plugin = "curves"\nseed = -1\n')
    line = one_error_line(invoke("train", "--config", toml, "--out", tmp_path / "r"))
    assert "seed must be an integer in [0, 2**63), got -1" in line
    run = load(curves_dir)
    for seed in (-1, 2**63, 1.5):
        with pytest.raises(AdvgenError, match=r"seed must be an integer in \[0, 2\*\*63\)"):
            run.sample(3, seed=seed)


# --- zero samples --------------------------------------------------------------------------------------


def test_zero_samples_write_empty_files_with_their_shape(curves_dir: Path, table_dir: Path, images_dir: Path,
                                                        tmp_path: Path) -> None:
    for suffix in (".csv", ".npz", ".npy"):
        result = invoke("sample", curves_dir, "-n", 0, "-o", tmp_path / f"c{suffix}")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "c.csv").read_text() == ",".join(f"x{i}" for i in range(8)) + "\n"
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert data["x"].shape == (0, 8) and data["x"].dtype == np.float64
    assert np.load(tmp_path / "c.npy").shape == (0, 8)
    for suffix in (".csv", ".parquet"):
        result = invoke("sample", table_dir, "-n", 0, "-o", tmp_path / f"t{suffix}")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "t.csv").read_text().strip() == "Proto,Bytes,Rate,Label"
    assert list(pd.read_parquet(tmp_path / "t.parquet").columns) == ["Proto", "Bytes", "Rate", "Label"]
    result = invoke("sample", images_dir, "-n", 0, "-o", tmp_path / "i.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "i.npz", allow_pickle=False) as data:
        assert data["x"].shape == (0, 8, 8, 1) and data["y"].shape == (0,)


# --- failures leave earlier files alone ----------------------------------------------------------------


def test_full_disk_keeps_the_previous_file_and_no_temp(curves_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from advgen.writers import ArrayWriter, TableWriter

    small_chunks(monkeypatch, 10)
    real_npz, real_table = ArrayWriter._write_npz, TableWriter._write

    def npz_then_full(self, arrays):
        if self.written >= 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_npz(self, arrays)

    monkeypatch.setattr(ArrayWriter, "_write_npz", npz_then_full)
    out = tmp_path / "keep.npz"
    out.write_bytes(b"precious")
    line = one_error_line(invoke("sample", curves_dir, "-n", 100, "-o", out, "--seed", 1))
    assert line == f"Error: disk full while writing {out}"
    assert out.read_bytes() == b"precious" and temp_files(tmp_path) == []

    def table_then_full(self, chunk):
        if self.written >= 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_table(self, chunk)

    monkeypatch.setattr(TableWriter, "_write", table_then_full)
    from advgen.errors import AdvgenError

    (tmp_path / "t.parquet").write_bytes(b"old")
    with pytest.raises(AdvgenError, match="disk full while writing"):
        with TableWriter(tmp_path / "t.parquet", 30) as writer:
            for i in range(3):
                writer.write(pd.DataFrame({"a": np.arange(10) + 10 * i}))
    assert (tmp_path / "t.parquet").read_bytes() == b"old" and temp_files(tmp_path) == []


def test_file_size_limit_while_writing_is_one_line(curves_dir: Path, tmp_path: Path) -> None:
    """A real write failure, through the real write path: the kernel refuses bytes past RLIMIT_FSIZE."""
    out = tmp_path / "keep.npz"
    out.write_bytes(b"precious")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run(
        [sys.executable, "-m", "advgen", "sample", str(curves_dir), "-n", "200000", "-o", str(out), "--seed", "1"],
        capture_output=True, text=True, preexec_fn=limit, env={**os.environ, "PYTHONPATH": PYTHONPATH}, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: cannot write {out}: File too large"], proc.stderr
    assert out.read_bytes() == b"precious" and temp_files(tmp_path) == []


def test_ctrl_c_keeps_the_previous_file_and_no_temp(curves_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from advgen.writers import ArrayWriter

    small_chunks(monkeypatch, 10)
    real = ArrayWriter._write_csv

    def interrupted(self, arrays):
        if self.written >= 30:
            raise KeyboardInterrupt
        real(self, arrays)

    monkeypatch.setattr(ArrayWriter, "_write_csv", interrupted)
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    result = invoke("sample", curves_dir, "-n", 100, "-o", out)
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert out.read_text() == "precious\n" and temp_files(tmp_path) == []


def test_read_only_folder_is_one_line_naming_the_output(curves_dir: Path, images_dir: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.csv").write_text("precious\n")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root writes anyway: make the file system refuse instead

            def refuse(*args, **kwargs):
                raise OSError(errno.EROFS, "Read-only file system")

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
            monkeypatch.setattr(tempfile, "mkdtemp", refuse)
        line = one_error_line(invoke("sample", curves_dir, "-n", 5, "-o", folder / "old.csv"))
        assert line.startswith(f"Error: cannot write {folder / 'old.csv'}: ") and "read-only" in line
        line = one_error_line(invoke("sample", images_dir, "-n", 5, "-o", folder / "pngs"))
        assert line.startswith(f"Error: cannot write {folder / 'pngs'}: ") and "read-only" in line
        assert sorted(p.name for p in folder.iterdir()) == ["old.csv"]
        assert (folder / "old.csv").read_text() == "precious\n"
    finally:
        folder.chmod(0o755)


# --- limits in bytes -----------------------------------------------------------------------------------


def test_outputs_too_large_for_the_disk_are_refused_before_sampling(curves_dir: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    import shutil
    from types import SimpleNamespace

    from advgen_export.manifest import ModelError
    from advgen_export.onnx_export import export
    from advgen_export.runtime import load as load_model

    # 8 float64 values a curve: 64 bytes each in .npz, up to 13 characters each in CSV
    line = one_error_line(invoke("sample", curves_dir, "-n", 10**12, "-o", tmp_path / "s.npz"))
    assert "1,000,000,000,000 samples would take about 58.2 TiB" in line and "above the limit of 16.0 TiB" in line
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - 1000, free=1000))
    line = one_error_line(invoke("sample", curves_dir, "-n", 1000, "-o", tmp_path / "s.csv"))
    assert "1,000 samples would take about 101.6 KiB" in line and "only 1000 B is free on that disk" in line
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    export(load(curves_dir), tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="above the limit of 16.0 TiB"):
        load_model(tmp_path / "m.onnx").write_samples(tmp_path / "big.npz", 10**13)
    assert not (tmp_path / "big.npz").exists()


def test_in_memory_sampling_beyond_memory_is_refused(curves_dir: Path, monkeypatch) -> None:
    from advgen.errors import AdvgenError

    monkeypatch.setattr("advgen.sampling.available_memory", lambda: 10**6)
    with pytest.raises(AdvgenError, match="in memory needs about .* write them to a file instead"):
        load(curves_dir).sample(10**6)


# --- memory does not grow with n -----------------------------------------------------------------------

PEAK_SCRIPT = """
import resource, sys
import torch, advgen.api, advgen.cli  # imports count in the baseline, not in the growth
from advgen.api import load_run
load_run(sys.argv[1]).sample(10, seed=0)  # warm up the nets once
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    advgen.cli.cli(["sample", sys.argv[1], "-n", sys.argv[2], "-o", sys.argv[3], "--seed", "0", "--no-validate"],
                   standalone_mode=False)
finally:
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_peak_memory_does_not_grow_with_n(tmp_path: Path) -> None:
    """2M curves of 32 float64 values are 512 MiB; streamed, the process grows by far less."""
    from advgen.api import train

    run_dir = tmp_path / "run"
    train({"plugin": "curves", "steps": 2, "n_samples": 0, "out": str(run_dir),
           "options": {"length": 32, "n_real": 64, "hidden": 16}, **ONE_THREAD})
    out = tmp_path / "big.npz"
    n = 2_000_000
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(run_dir), str(n), str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYTHONPATH, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    growth = int(proc.stdout.strip().splitlines()[-1])
    full = n * 32 * 8
    assert growth < full / 3, f"grew by {growth / 2**20:.0f} MiB for a {full / 2**20:.0f} MiB array"
    with zipfile.ZipFile(out) as zf, zf.open("x.npy") as fh:
        assert np.lib.format.read_magic(fh) == (1, 0)
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    assert shape == (n, 32) and dtype == np.float64
    out.unlink()


# --- domains written before open_writer ------------------------------------------------------------------


def test_a_domain_that_only_overrides_write_samples_still_writes(curves_dir: Path, tmp_path: Path) -> None:
    from advgen_curves import CurvesDomain

    class OldStyle(CurvesDomain):
        def write_samples(self, samples, path, spec):
            Path(path).write_text("\n".join(" ".join(f"{v:.3f}" for v in row) for row in samples))

        def sample_suffixes(self):
            return (".txt",)

    run = load(curves_dir)
    run.domain = OldStyle()
    run.write_samples(tmp_path / "s.txt", 4, seed=1)
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert len(lines) == 4 and float(lines[0].split()[0]) == pytest.approx(run.sample(4, seed=1)[0, 0], abs=1e-3)
