"""Tabular options are checked before use: a wrong type, NaN or infinity, or a value out of range is
one error line naming the option (was a ValueError or TypeError traceback, or a net so large that the
OOM killer ended the run); too many end-of-training samples are refused before training, not after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from advgen.cli import cli
from advgen.config import TrainConfig
from advgen.errors import AdvgenError


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "ok.csv"
    rows = [
        f"{rng.integers(0, 20)},{rng.normal():.3f},{'xyz'[i % 3]},{'xy'[i % 2]},{('normal', 'attack')[i % 2]}"
        for i in range(120)
    ]
    path.write_text("a,b,c,d,Label\n" + "\n".join(rows) + "\n")
    return path


def train(csv: Path, out: Path, *extra: str):
    return invoke(
        "train", "--plugin", "tabular", "--data", csv, "--label", "Label", "--steps", "3", "--batch-size", "16",
        "--threads", "1", "--overwrite", "--out", out, *extra,
    )


BAD = [
    # (--option text, what the error line says)
    ('tau="abc"', "option tau must be a positive finite number, got 'abc'"),
    ("tau=inf", "option tau must be a positive finite number, got inf"),
    ("tau=nan", "option tau must be a positive finite number, got nan"),
    ("tau=0", "option tau must be a positive finite number, got 0"),
    ("tau=true", "option tau must be a positive finite number, got True"),
    ('dropout="x"', "option dropout must be a number in [0, 1), got 'x'"),
    ("dropout=[1]", "option dropout must be a number in [0, 1), got [1]"),
    ("dropout=1", "option dropout must be a number in [0, 1), got 1"),
    ("dropout=-0.1", "option dropout must be a number in [0, 1), got -0.1"),
    ('joint_max="a"', "option joint_max must be an integer in [0, 1000000], got 'a'"),
    ("joint_max=-1", "option joint_max must be an integer in [0, 1000000], got -1"),
    ("joint_max=2.5", "option joint_max must be an integer in [0, 1000000], got 2.5"),
    ("schema=5", "option schema must be the path of a file (a string), got 5"),
    ('schema=""', "option schema must be the path of a file (a string), got ''"),
    ("hidden=1000000", "option hidden must be an integer in [1, 32768], got 1000000"),
    ("hidden=true", "option hidden must be an integer in [1, 32768], got True"),
    ("depth=1000000", "option depth must be an integer in [1, 64], got 1000000"),
    ("depth=0", "option depth must be an integer in [1, 64], got 0"),
    ("embed_dim=1e9", "option embed_dim must be an integer in [1, 4096], got 1000000000.0"),
    ("d_hidden=-3", "option d_hidden must be an integer in [1, 32768], got -3"),
    ("d_depth=65", "option d_depth must be an integer in [1, 64], got 65"),
    ("pac=1000", "option pac must be an integer in [1, 64], got 1000"),
    ("n_quantiles=1", "option n_quantiles must be an integer in [2, 100000], got 1"),
    ("n_quantiles=10000000", "option n_quantiles must be an integer in [2, 100000], got 10000000"),
    ("point_masses=nan", "option point_masses must be an integer in [0, 256], got nan"),
    ("point_share=0", "option point_share must be a number in (0, 1], got 0"),
    ('spectral_norm="yes"', "option spectral_norm must be true or false, got 'yes'"),
    ("projection=1", "option projection must be true or false, got 1"),
    ("keep_order=0", "option keep_order must be true or false, got 0"),
    ("encoding=[1]", "option encoding must be one of quantile, log, msn, got [1]"),
    ('categorical="argmax"', "option categorical must be one of sample, straight-through, gumbel, got 'argmax'"),
    ('storage="ram"', "option storage must be one of auto, memory, disk, got 'ram'"),
    ("memory_budget=inf", "option memory_budget must be a size such as 2GB or 1.5GiB, or a positive number"),
    ('memory_budget="' + "9" * 400 + 'GB"', "option memory_budget must be a size such as 2GB or 1.5GiB, got '999"),
    ("hidden=30000", "options hidden x hidden x depth = 30,000 x 30,000 x 2 = 1,800,000,000 weights is too large"),
    ("bogus=1", "unknown tabular option(s) bogus; known: align, categorical"),
]


@pytest.mark.parametrize("option, expected", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_tabular_option_is_one_error_line(csv, tmp_path, option, expected):
    out = tmp_path / "run"
    line = error_line(train(csv, out, "--option", option))
    assert line.startswith("Error: " + expected), line
    assert not out.exists()  # refused before anything was read, trained or written


@pytest.mark.parametrize(
    "toml, expected",
    [
        ('tau = "abc"', "option tau must be a positive finite number, got 'abc'"),
        ("depth = 1000000", "option depth must be an integer in [1, 64], got 1000000"),
        ("dropout = [1]", "option dropout must be a number in [0, 1), got [1]"),
        ("schema = 5", "option schema must be the path of a file (a string), got 5"),
        ("pac = nan", "option pac must be an integer in [1, 64], got nan"),
    ],
)
def test_bad_tabular_option_in_a_config_file_is_one_error_line(csv, tmp_path, toml, expected):
    config = tmp_path / "run.toml"
    config.write_text(f'plugin = "tabular"\ndata = "{csv}"\nlabel = "Label"\nsteps = 3\n\n[options]\n{toml}\n')
    line = error_line(invoke("train", "--config", config, "--threads", "1", "--out", tmp_path / "run"))
    assert line == "Error: " + expected


def test_good_tabular_options_still_train(csv, tmp_path):
    good = [
        "tau=0.5", "dropout=0.1", "joint_max=0", "pac=2", "hidden=32", "depth=1", "d_hidden=32", "d_depth=3",
        "embed_dim=8", "n_quantiles=65", "point_masses=0", "point_share=1", "spectral_norm=false",
        "projection=true", 'categorical="gumbel"', 'encoding="log"', "keep_order=true", 'storage="memory"',
        'memory_budget="2GB"',
    ]
    result = train(csv, tmp_path / "run", "--n-samples", "50", *[a for o in good for a in ("--option", o)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "samples.csv").is_file()
    # an integral float is the integer; the documented defaults are accepted as they are
    result = train(csv, tmp_path / "run2", "--n-samples", "0", "--option", "hidden=64.0", "--option", "joint_max=1000",
                   "--option", "n_quantiles=2049", "--option", "tau=1", "--option", "depth=2")
    assert result.exit_code == 0, result.output


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from([
        "schema", "storage", "memory_budget", "encoding", "n_quantiles", "joint_max", "snap_fractions", "derive",
        "keep_order", "follow_label", "point_masses", "point_share", "hidden", "depth", "embed_dim", "categorical",
        "tau", "d_hidden", "d_depth", "dropout", "spectral_norm", "pac", "projection",
    ]),
    value=st.one_of(
        st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=20),
        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
)
def test_any_option_value_is_accepted_in_range_or_one_advgen_error(key, value):
    from advgen_tabular.options import MAX_WEIGHTS, OPTIONS, check_options

    try:
        opts = check_options({key: value})
    except AdvgenError as exc:
        assert "\n" not in str(exc) and key in str(exc)
        return
    option = OPTIONS[key]
    got = opts[key]
    if option.kind in ("int", "number"):
        assert not isinstance(got, bool) and np.isfinite(got)
        assert option.low <= got and (option.high is None or got <= option.high)
        assert isinstance(got, int if option.kind == "int" else float)
    elif option.kind == "bool":
        assert isinstance(got, bool)
    elif option.kind in ("choice", "path"):
        assert got is None or isinstance(got, str)
    assert opts["hidden"] ** 2 * opts["depth"] <= MAX_WEIGHTS


def test_the_defaults_pass_their_own_checks():
    from advgen_tabular.domain import DEFAULT_OPTIONS, TabularDomain
    from advgen_tabular.options import check_options

    assert check_options({}) == DEFAULT_OPTIONS
    assert check_options(TabularDomain().default_config()["options"]) == DEFAULT_OPTIONS


# --- too many samples at the end of training ---------------------------------------------------------


def test_absurd_n_samples_is_refused_before_training(csv, tmp_path):
    out = tmp_path / "run"
    result = train(csv, out, "--n-samples", "1000000000000")
    line = error_line(result)
    assert "sampling 1,000,000,000,000 tabular samples in memory needs about" in line
    assert "lower --n-samples" in line
    assert "training tabular on" not in result.output  # refused before the first step, not after the last
    assert not out.exists()
    line = error_line(train(csv, out, "--n-samples", "10000000000000"))
    assert line == "Error: n_samples must be at most 1,000,000,000,000, got 10,000,000,000,000"
    with pytest.raises(AdvgenError, match="n_samples must be an integer >= 0"):
        TrainConfig(plugin="tabular", n_samples=True).validate()


def test_n_samples_that_fit_still_train_and_write(csv, tmp_path, monkeypatch):
    # the check is the one sampling runs: against the memory available, as much as fits is written
    monkeypatch.setattr("advgen.sampling.available_memory", lambda: 10**6)
    line = error_line(train(csv, tmp_path / "big", "--n-samples", "100000"))
    assert "sampling 100,000 tabular samples in memory needs about" in line and "976.6 KiB is available" in line
    result = train(csv, tmp_path / "run", "--n-samples", "200")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "run" / "samples.csv").read_text().splitlines()) == 201
