from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "pattern_plugin.py"

# small real runs on CPU: keep torch from oversubscribing CI's two cores
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def fresh_manager():
    """A plugin manager with the default plugins loaded, independent of the process-wide one."""
    from advgen.plugins import PluginManager

    manager = PluginManager()
    manager.load_default()
    return manager


@pytest.fixture(autouse=True)
def _reset_global_manager():
    from advgen import cli
    from advgen.plugins import reset_manager

    reset_manager()
    cli._COMMANDS_LOADED = False
    yield
    reset_manager()
    cli._COMMANDS_LOADED = False


@pytest.fixture
def data_dir() -> Path:
    """The NSL-KDD data directory: ADVGEN_DATA, else ../shared/datasets beside the repo. Fails if absent."""
    candidates = [os.environ.get("ADVGEN_DATA"), str(REPO.parent / "shared" / "datasets")]
    for c in candidates:
        if c and (Path(c) / "nsl-kdd" / "KDDTrain+_20Percent.txt").is_file():
            os.environ["ADVGEN_DATA"] = c
            return Path(c)
    pytest.fail("NSL-KDD files not found: set ADVGEN_DATA to a folder holding nsl-kdd/KDDTrain+_20Percent.txt")
