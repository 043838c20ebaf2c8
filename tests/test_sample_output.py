"""Where ``advgen sample`` and ``advgen-runtime sample`` write: a file they replace is named on stderr
once the new one is in place, and an -o that is not a regular file (a device such as /dev/full, a
folder, a pipe) is refused with one line that says what it is."""

from __future__ import annotations

import builtins
import io
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import train_tiny_curves

from advgen.cli import cli
from advgen.errors import AdvgenError

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def curves_run(tmp_path_factory) -> Path:
    return train_tiny_curves(tmp_path_factory.mktemp("sample-output") / "run")


@pytest.fixture(scope="module")
def curves_model(curves_run) -> Path:
    from advgen.api import load_run
    from advgen_export.onnx_export import export

    path = curves_run.parent / "curves.onnx"
    export(load_run(curves_run), path)
    return path


def temps_on_a_full_disk(monkeypatch, name: str) -> None:
    """Temporary files of ``name`` opened for writing go to /dev/full: the kernel answers ENOSPC."""
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).name.startswith(f".{name}.") and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


@needs_dev_full
def test_sample_replaces_an_existing_file_and_says_so_once_done(curves_run, tmp_path, monkeypatch):
    out = tmp_path / "x.csv"
    first = invoke("sample", str(curves_run), "-n", "5", "-o", str(out), "--seed", "0")
    assert first.exit_code == 0 and first.stderr == "", first.output
    old = out.read_bytes()
    second = invoke("sample", str(curves_run), "-n", "6", "-o", str(out), "--seed", "1")
    assert second.exit_code == 0, second.output
    assert second.stderr == f"note: replaced existing file {out}\n"
    assert second.stdout.startswith(f"wrote 6 samples to {out}\n")
    new = out.read_bytes()
    assert new != old and len(new.splitlines()) == 7
    # a write that fails (a full disk, for real) leaves the file as it was and replaces nothing
    temps_on_a_full_disk(monkeypatch, out.name)
    failed = invoke("sample", str(curves_run), "-n", "5", "-o", str(out), "--seed", "2")
    assert failed.exit_code == 1 and failed.stdout == ""
    assert failed.stderr == f"Error: disk full while writing {out}\n"
    assert out.read_bytes() == new


def test_runtime_sample_replaces_an_existing_file_and_says_so(curves_model, tmp_path, capsys):
    from advgen_export.cli import main

    out = tmp_path / "x.csv"
    assert main(["sample", str(curves_model), "-n", "5", "-o", str(out), "--seed", "0"]) == 0
    assert "note:" not in capsys.readouterr().err
    old = out.read_bytes()
    assert main(["sample", str(curves_model), "-n", "6", "-o", str(out), "--seed", "1"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"note: replaced existing file {out}", err
    assert out.read_bytes() != old


@needs_dev_full
def test_sample_to_a_device_says_it_is_a_device(curves_run, curves_model, capsys):
    from advgen_export.cli import main

    result = invoke("sample", str(curves_run), "-n", "5", "-o", "/dev/full")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == "Error: -o /dev/full is a device, not a regular file\n"
    assert main(["sample", str(curves_model), "-n", "5", "-o", "/dev/full"]) == 1
    assert capsys.readouterr().err == "advgen-runtime: error: -o /dev/full is a device, not a regular file\n"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_sample_to_a_folder_says_it_is_a_folder(curves_run, curves_model, tmp_path, capsys):
    from advgen_export.cli import main

    folder = tmp_path / "rows.csv"
    folder.mkdir()
    result = invoke("sample", str(curves_run), "-n", "5", "-o", str(folder))
    assert result.exit_code == 1
    assert result.output == f"Error: -o {folder} is a folder, not a regular file\n"
    assert main(["sample", str(curves_model), "-n", "5", "-o", str(folder)]) == 1
    assert capsys.readouterr().err == f"advgen-runtime: error: -o {folder} is a folder, not a regular file\n"
    assert folder.is_dir() and list(folder.iterdir()) == [] and list(tmp_path.iterdir()) == [folder]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_writing_samples_never_replaces_a_pipe_with_a_file(curves_run, tmp_path):
    from advgen.api import load_run

    pipe = tmp_path / "rows.csv"
    os.mkfifo(pipe)
    with pytest.raises(AdvgenError, match=f"^{pipe} is a pipe, not a regular file$"):
        load_run(curves_run).write_samples(pipe, 5, seed=0)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and list(tmp_path.iterdir()) == [pipe]
    result = invoke("sample", str(curves_run), "-n", "5", "-o", str(pipe))
    assert result.output == f"Error: -o {pipe} is a pipe, not a regular file\n"
