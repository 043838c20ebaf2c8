"""The wheel built from the repo holds every package, plugin entry point and data file the README installs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_package_and_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("advgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "advgen/cli.py", "advgen/hookspecs.py", "advgen_curves/__init__.py", "advgen_tabular/__init__.py",
        "advgen_images/__init__.py", "advgen_datasets/__init__.py", "advgen_datasets/manifests/nsl-kdd.toml",
        "advgen_export/runtime.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for line in ("[advgen]", "curves = advgen_curves", "tabular = advgen_tabular", "images = advgen_images",
                 "advgen = advgen.cli:main", "advgen-runtime = advgen_export.cli:main"):
        assert line in text, f"{line!r} missing from entry points"
