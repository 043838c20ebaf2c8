"""The hook contract: every hookspec is documented and exercised by a plugin written here."""

from __future__ import annotations

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

    CALLS = []  # (hook name, what it was called with), in call order

    class LoudLoss(NonSaturatingLoss):
        name = "loud"

    @hookimpl
    def advgen_register_domains(register):
        CALLS.append(("advgen_register_domains",))  # registers none: the built-ins own the names

    @hookimpl
    def advgen_register_losses(register):
        CALLS.append(("advgen_register_losses",))
        register("loud", LoudLoss)

    @hookimpl
    def advgen_register_validators(domain, spec, register):
        CALLS.append(("advgen_register_validators", domain))
        if domain == "curves":
            register(Validator("starts-below-3", "first point below 3", lambda c: c[:, 0] < 3, "extra"))

    @hookimpl
    def advgen_register_detectors(register):
        from sklearn.dummy import DummyClassifier
        CALLS.append(("advgen_register_detectors",))
        register("dummy", lambda seed: DummyClassifier())

    @hookimpl
    def advgen_register_commands(cli):
        CALLS.append(("advgen_register_commands",))

        @cli.command("hello")
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

    @hookimpl
    def advgen_train_start(trainer):
        CALLS.append(("advgen_train_start", trainer.step))

    @hookimpl
    def advgen_train_log(trainer, step, metrics):
        CALLS.append(("advgen_train_log", step, sorted(metrics)))

    @hookimpl
    def advgen_checkpoint_saved(trainer, path):
        CALLS.append(("advgen_checkpoint_saved", path))

    @hookimpl
    def advgen_train_end(trainer, summary):
        CALLS.append(("advgen_train_end", summary["steps"]))
    '''
)


@pytest.fixture
def recorder(tmp_path, fresh_manager):
    path = tmp_path / "recorder_plugin.py"
    path.write_text(RECORDER)
    name = fresh_manager.load_local(str(path))
    return fresh_manager, fresh_manager.pm.get_plugin(name)


def test_every_hookspec_is_documented():
    assert hookspecs.HOOK_NAMES, "no hookspecs found"
    for name in hookspecs.HOOK_NAMES:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_every_hookspec_is_called_by_the_flows_that_promise_it(recorder, tmp_path, monkeypatch):
    """Load a plugin implementing every hookspec, then go through what a user does: train a run
    (with a checkpoint and a validation), pick a detector for evaluation, start the command line.
    Each hookspec must have been called at least once; a hook the core stops calling fails here."""
    from advgen import plugins
    from advgen.cli import cli
    from advgen.metrics.detectors import resolve_detector

    manager, plugin = recorder
    monkeypatch.setattr(plugins, "_MANAGER", manager)  # what the API and the CLI load by default
    assert [c[0] for c in plugin.CALLS] == ["advgen_register_domains"]  # called as the plugin loads
    train({"plugin": "curves", "steps": 4, "log_every": 2, "ckpt_every": 2, "n_samples": 20,
           "out": str(tmp_path / "run")})
    assert resolve_detector("dummy")[0] == "dummy"
    result = CliRunner().invoke(cli, ["hello"])
    assert result.exit_code == 0 and "hello from a plugin" in result.output, result.output
    called = {c[0] for c in plugin.CALLS}
    assert set(hookspecs.HOOK_NAMES) - called == set(), "hookspecs never called"
    assert called <= set(hookspecs.HOOK_NAMES)


def test_register_domains_by_entry_point_and_by_path(fresh_manager, tmp_path):
    infos = {i.name: i for i in fresh_manager.infos()}
    assert "curves" in infos and infos["curves"].source.startswith("entry point")
    assert "advgen_register_domains" in infos["curves"].hooks
    path = str(TESTS.parent / "examples" / "pattern_plugin.py")
    with pytest.raises(PluginError, match="unknown plugin"):
        fresh_manager.domain(path)  # a name read from an artifact never loads code
    domain = fresh_manager.load_domain(path)  # a path the user names does
    assert domain.name == "pattern" and fresh_manager.domain("pattern") is domain
    assert "pattern" in fresh_manager.domain_names()


def test_training_callbacks_losses_and_validators(recorder, tmp_path):
    manager, plugin = recorder
    run = train(
        {"plugin": "curves", "steps": 20, "log_every": 10, "ckpt_every": 10, "loss": "loud", "n_samples": 50,
         "out": str(tmp_path / "run")},
        manager=manager,
    )
    training = [c for c in plugin.CALLS if c[0] in ("advgen_train_start", "advgen_train_log",
                                                      "advgen_checkpoint_saved", "advgen_train_end")]
    assert training[0] == ("advgen_train_start", 0) and training[-1] == ("advgen_train_end", 20)
    logs = [c for c in training if c[0] == "advgen_train_log"]
    assert [c[1] for c in logs] == [10, 20] and logs[0][2] == ["loss_d", "loss_g", "step_time"]
    saved = [c[1] for c in training if c[0] == "advgen_checkpoint_saved"]
    assert len(saved) == 2 and all(Path(p).is_file() for p in saved)  # step 10 and the final one
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
