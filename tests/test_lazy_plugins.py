"""Listing commands and plugins does not import torch; domains registered by reference load on use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from advgen.errors import PluginError
from advgen.hookspecs import DomainRef, hookimpl
from advgen.plugins import PluginManager


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--json"], ["train", "--help"], ["datasets", "list", "--help"]])
def test_help_and_listings_do_not_import_torch_or_pandas(args):
    code = (
        "from click.testing import CliRunner\nfrom advgen.cli import cli\n"
        f"r = CliRunner().invoke(cli, {args!r})\nassert r.exit_code == 0, r.output\n"
        "assert 'curves' in r.output or 'Usage' in r.output"
    )
    loaded = _modules_after(code)
    assert "torch" not in loaded and "pandas" not in loaded


def test_a_domain_reference_is_imported_on_first_use_only():
    manager = PluginManager()
    manager.load_default()
    assert "tabular" in manager.domain_names()
    assert isinstance(manager._domains["tabular"], DomainRef)
    domain = manager.domain("tabular")
    assert domain.name == "tabular" and manager.domain("tabular") is domain


class _BrokenRef:
    @staticmethod
    @hookimpl
    def advgen_register_domains(register):
        register(DomainRef("ghost", "no_such_module_for_advgen", "Ghost"))


class _WrongRef:
    @staticmethod
    @hookimpl
    def advgen_register_domains(register):
        register(DomainRef("ghost2", "advgen_curves.domain", "CurvesDomain"))  # a class named otherwise


def test_a_broken_reference_is_one_clear_error_on_use():
    manager = PluginManager()
    manager._register(_BrokenRef, "broken", "1", "test")
    manager._register(_WrongRef, "wrong", "1", "test")
    with pytest.raises(PluginError, match="domain 'ghost' of plugin 'broken' cannot be loaded"):
        manager.domain("ghost")
    with pytest.raises(PluginError, match="is not the Domain named 'ghost2'"):
        manager.domain("ghost2")
