"""A checkpoint never runs code: the plugin it names is looked up among registered domains only.

The exploit these tests guard against: rewrite the ``plugin`` field of a valid checkpoint to a ``.py``
file (or an importable module) that does something, then get a victim to run ``advgen sample RUN``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from advgen.cli import cli

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "pattern_plugin.py")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _tamper(run: Path, **fields: object) -> None:
    """Rewrite fields of the checkpoint as an attacker would: with a digest that matches (the digest
    catches corruption, not someone who can write the file), so that the defence tested is the
    plugin lookup itself."""
    from advgen.checkpoint import DIGEST_KEY, payload_digest

    ckpt = run / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    payload.update(fields)
    payload[DIGEST_KEY] = payload_digest(payload)
    torch.save(payload, ckpt)


@pytest.fixture
def payload_file(tmp_path) -> tuple[Path, Path]:
    """A plugin file that leaves a marker when it is imported."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "some" / "dir" / "helper.py"
    evil.parent.mkdir(parents=True)
    evil.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    return evil, marker


def _one_clean_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("field", ["plugin", "domain"])
def test_a_checkpoint_naming_a_file_does_not_run_it(curves_run, payload_file, tmp_path, field):
    evil, marker = payload_file
    fields = {"plugin": str(evil), "domain": str(evil)} if field == "domain" else {"plugin": str(evil), "domain": "nope"}
    _tamper(curves_run, **fields)
    commands = [
        ("sample", str(curves_run), "-n", "5", "-o", str(tmp_path / "x.csv")),
        ("export", str(curves_run), "-o", str(tmp_path / "m.onnx")),
        ("train", "--resume", str(curves_run), "--steps", "10", "-q"),
    ]
    for args in commands:
        line = _one_clean_line(invoke(*args))
        assert "not loaded" in line and "ADVGEN_PLUGINS" in line, line
        assert not marker.exists(), f"{args[0]} ran the file the checkpoint named"


def test_a_checkpoint_naming_a_module_does_not_import_it(curves_run, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "evil_module_xyz.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    _tamper(curves_run, plugin="evil_module_xyz", domain="evil_module_xyz")
    line = _one_clean_line(invoke("sample", str(curves_run), "-n", "5", "-o", str(tmp_path / "x.csv")))
    assert "not loaded" in line
    assert not marker.exists()


def test_non_string_plugin_field_is_a_clear_error(curves_run, tmp_path):
    _tamper(curves_run, plugin=5, domain=None)
    line = _one_clean_line(invoke("sample", str(curves_run), "-n", "5", "-o", str(tmp_path / "x.csv")))
    assert "checkpoint" in line


def test_a_plugin_the_user_loads_deliberately_still_works(tmp_path, monkeypatch):
    out = tmp_path / "pattern"
    result = invoke("train", "--plugin", EXAMPLE, "--steps", "20", "--n-samples", "0", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    # a fresh process knows nothing of the file: the run names it, but loading it is refused...
    from advgen.plugins import reset_manager

    reset_manager()
    line = _one_clean_line(invoke("sample", str(out), "-n", "5", "-o", str(tmp_path / "p.csv")))
    assert "ADVGEN_PLUGINS=" + str(Path(EXAMPLE).resolve()) in line
    # ...until the user loads it: through ADVGEN_PLUGINS for any command, or --plugin on resume
    reset_manager()
    monkeypatch.setenv("ADVGEN_PLUGINS", EXAMPLE)
    result = invoke("sample", str(out), "-n", "5", "-o", str(tmp_path / "p.csv"))
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("ADVGEN_PLUGINS")
    reset_manager()
    result = invoke("train", "--resume", str(out), "--plugin", EXAMPLE, "--steps", "30", "-q")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_code_running_pickle_is_one_plain_error_that_never_advises_weights_only_false(curves_run, tmp_path, writer):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = curves_run / "checkpoint.pt"
    if writer == "torch.save":
        torch.save({"generator": Evil()}, ckpt)
    else:  # protocol 4: torch warns about it before refusing the file
        ckpt.write_bytes(pickle.dumps({"generator": Evil()}, protocol=4))
    for args in (["sample", str(curves_run), "-n", "3", "-o", str(tmp_path / "s.csv")], ["export", str(curves_run), "-o", str(tmp_path / "m.onnx")]):
        result = invoke(*args)
        line = _one_clean_line(result)
        assert "weights_only" not in line and "arbitrary code" not in line, line
        if writer == "torch.save":  # protocol 2: torch reads as far as the global it refuses
            assert "unsafe" in line and "system" in line, line
        assert result.output.strip() == line, result.output  # no warning lines around it
        assert not marker.exists()


# --- a forged config, spec or step: one line, never a traceback --------------------------------------------


def _forge(run: Path, edit) -> None:
    """Edit the checkpoint's config/spec JSON (and step) with a matching digest, as anyone who can write it."""
    import json

    from advgen.checkpoint import DIGEST_KEY, payload_digest

    ckpt = run / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    cfg, spec = json.loads(payload["config"]), json.loads(payload["spec"])
    cfg, spec = edit(payload, cfg, spec)
    payload["config"], payload["spec"] = json.dumps(cfg), json.dumps(spec)
    payload.pop(DIGEST_KEY, None)
    payload[DIGEST_KEY] = payload_digest(payload)
    torch.save(payload, ckpt)


def _set_step(value):
    def edit(p, cfg, spec):
        p["step"] = value
        return cfg, spec
    return edit


FORGERIES = {
    "step text": (_set_step("x"), "invalid step"),
    "step negative": (_set_step(-5), "invalid step"),
    "config a list": (lambda p, cfg, spec: ([1], spec), "not a JSON object"),
    "spec emptied": (lambda p, cfg, spec: (cfg, {}), "does not match the curves domain's nets"),
    "spec shape text": (lambda p, cfg, spec: (cfg, {**spec, "shape": "abc"}), "does not match the curves domain's nets"),
    "latent size": (lambda p, cfg, spec: ({**cfg, "z_dim": 7}, spec), "does not match the curves domain's nets"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_checkpoint_is_one_line_for_sample_and_resume(curves_run, tmp_path, name):
    # the audit: ValueError, AttributeError, KeyError and TypeError tracebacks, a two-line state-dict error,
    # and a resume "from step -5"
    import shutil

    edit, message = FORGERIES[name]
    run = tmp_path / "forged"
    shutil.copytree(curves_run, run)
    _forge(run, edit)
    line = _one_clean_line(invoke("sample", str(run), "-n", "3", "-o", str(tmp_path / "s.csv")))
    assert message in line, line
    assert not (tmp_path / "s.csv").exists()
    line = _one_clean_line(invoke("train", "--resume", str(run), "--steps", "999", "--threads", "1"))
    assert message in line or "invalid config" in line or "does not match this run's nets: Error(s) in loading" in line, line


def test_resume_says_which_data_it_reads(curves_run, tmp_path):
    import shutil

    run = tmp_path / "again"
    shutil.copytree(curves_run, run)
    result = invoke("train", "--resume", str(run), "--steps", "40", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert f"resuming {run} at step" in result.output and "reading" in result.output
    # the time is the whole run's; this session's steps and time stand beside it (rows/s is of this session)
    assert "(35 steps in " in result.output and "s this session)" in result.output
