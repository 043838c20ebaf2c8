"""The hook contract: every hookspec is documented and exercised by a plugin written here."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from advgen import hookspecs
from advgen.api import train
from advgen.errors import PluginError
from advgen.plugins import PluginManager

TESTS = Path(__file__).parent

RECORDER = textwrap.dedent(
    '''
    import click
    from advgen.domain import Validator
    from advgen.hookspecs import hookimpl
    from advgen.losses import NonSaturatingLoss

    CALLS = []

    class LoudLoss(NonSaturatingLoss):
        name = "loud"

    @hookimpl
    def advgen_register_losses(register):
        register("loud", LoudLoss)

    @hookimpl
    def advgen_register_validators(domain, spec, register):
        if domain == "curves":
            register(Validator("starts-below-3", "first point below 3", lambda c: c[:, 0] < 3, "extra"))

    @hookimpl
    def advgen_register_detectors(register):
        from sklearn.dummy import DummyClassifier
        register("dummy", lambda seed: DummyClassifier())

    @hookimpl
    def advgen_register_commands(cli):
        @cli.command("hello")
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

    @hookimpl
    def advgen_train_start(trainer):
        CALLS.append(("start", trainer.step))

    @hookimpl
    def advgen_train_log(trainer, step, metrics):
        CALLS.append(("log", step, sorted(metrics)))

    @hookimpl
    def advgen_checkpoint_saved(trainer, path):
        CALLS.append(("checkpoint", path))

    @hookimpl
    def advgen_train_end(trainer, summary):
        CALLS.append(("end", summary["steps"]))
    '''
)


@pytest.fixture
def recorder(tmp_path, fresh_manager):
    path = tmp_path / "recorder_plugin.py"
    path.write_text(RECORDER)
    name = fresh_manager.load_local(str(path))
    return fresh_manager, fresh_manager.pm.get_plugin(name)


def test_every_hookspec_is_documented_and_tested():
    tested = "\n".join(p.read_text() for p in TESTS.glob("test_*.py"))
    assert hookspecs.HOOK_NAMES, "no hookspecs found"
    for name in hookspecs.HOOK_NAMES:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert re.search(rf"def {name}\(", tested), f"no test plugin implements {name}"


def test_register_domains_by_entry_point_and_by_path(fresh_manager, tmp_path):
    infos = {i.name: i for i in fresh_manager.infos()}
    assert "curves" in infos and infos["curves"].source.startswith("entry point")
    assert "advgen_register_domains" in infos["curves"].hooks
    domain = fresh_manager.domain(str(TESTS.parent / "examples" / "pattern_plugin.py"))
    assert domain.name == "pattern"
    assert "pattern" in fresh_manager.domain_names()


def test_training_callbacks_losses_and_validators(recorder, tmp_path):
    manager, plugin = recorder
    run = train(
        {"plugin": "curves", "steps": 20, "log_every": 10, "ckpt_every": 10, "loss": "loud", "n_samples": 50,
         "out": str(tmp_path / "run")},
        manager=manager,
    )
    kinds = [c[0] for c in plugin.CALLS]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert [c[1] for c in plugin.CALLS if c[0] == "log"] == [10, 20]
    assert [c for c in plugin.CALLS if c[0] == "log"][0][2] == ["loss_d", "loss_g", "step_time"]
    assert sum(k == "checkpoint" for k in kinds) == 2  # step 10 and the final one
    assert "starts-below-3" in run.summary["validity_synthetic"]["per_rule"]
    assert run.config.loss == "loud"


def test_register_detectors(recorder):
    manager, _ = recorder
    detectors = manager.detectors()
    assert {"random-forest", "gradient-boosting", "logistic-regression", "mlp", "dummy"} <= set(detectors)
    est = detectors["dummy"](0).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    assert est.predict_proba(np.zeros((1, 2))).shape == (1, 2)


def test_register_commands(tmp_path, monkeypatch):
    path = tmp_path / "recorder_plugin.py"
    path.write_text(RECORDER)
    monkeypatch.setenv("ADVGEN_PLUGINS", str(path))
    from advgen.cli import cli

    result = CliRunner().invoke(cli, ["hello"])
    assert result.exit_code == 0, result.output
    assert "hello from a plugin" in result.output


def test_misspelt_hookimpl_fails_loudly(tmp_path):
    bad = tmp_path / "typo_plugin.py"
    bad.write_text(
        "from advgen.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef advgen_register_domain(register):\n    pass\n"
    )
    manager = PluginManager()
    manager.load_default()
    with pytest.raises(PluginError, match="advgen_register_domain"):
        manager.load_local(str(bad))


def test_unknown_plugin_lists_available(fresh_manager):
    with pytest.raises(PluginError, match=r"unknown plugin 'nope'; available: .*curves"):
        fresh_manager.domain("nope")


def test_duplicate_domain_name_is_an_error(tmp_path, fresh_manager):
    dup = tmp_path / "dup_plugin.py"
    dup.write_text(
        "from advgen.hookspecs import hookimpl\nfrom advgen_curves import CurvesDomain\n\n"
        "@hookimpl\ndef advgen_register_domains(register):\n    register(CurvesDomain)\n"
    )
    with pytest.raises(PluginError, match="registered twice"):
        fresh_manager.load_local(str(dup))
