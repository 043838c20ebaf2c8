"""The plugin manager: built-ins and third-party plugins by entry point, local files, listing.

Built-in plugins (curves, tabular, images) are registered under the ``advgen`` entry-point group in
``pyproject.toml``, exactly like a third-party package would. A local plugin file or module is loaded
with ``--plugin path/to/file.py`` (or listed in ``ADVGEN_PLUGINS``, comma separated);
``ADVGEN_BLOCK_PLUGINS`` names entry-point plugins not to load. After loading,
``pm.check_pending()`` makes a misspelt ``@hookimpl`` fail loudly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from advgen import hookspecs
from advgen.errors import PluginError
from advgen.hookspecs import DomainRef

if TYPE_CHECKING:  # the domain contract imports torch: loaded only when a domain is used
    from advgen.domain import Domain, Validator

ENTRY_POINT_GROUP = "advgen"
_BUILTIN_CORE = "advgen.builtins"


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str
    hooks: list[str]
    domains: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "hooks": self.hooks,
            "domains": self.domains,
        }


class PluginManager:
    """Wraps a pluggy manager and the registries the hooks fill."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, tuple[str, str]] = {}  # plugin name -> (version, source)
        self._domains: dict[str, Domain | DomainRef] = {}  # references are resolved on first use
        self._domain_owner: dict[str, str] = {}
        self._local: list[str] = []
        self.broken: dict[str, str] = {}  # entry-point plugins that failed to import, with why

    # --- loading ---------------------------------------------------------------------------------

    def load_default(self) -> None:
        """Register the core's own hooks, every entry-point plugin, and ADVGEN_PLUGINS paths."""
        core = importlib.import_module(_BUILTIN_CORE)
        self._register(core, "core", _version("advgen"), "advgen (core)")
        blocked = {b.strip() for b in os.environ.get("ADVGEN_BLOCK_PLUGINS", "").split(",") if b.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken package must not hide the others: report it on use
                self.broken[ep.name] = f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}"
                continue
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            self._register(module, ep.name, version, f"entry point {ep.value} ({dist})")
        for path in os.environ.get("ADVGEN_PLUGINS", "").split(","):
            if path.strip():
                self.load_local(path.strip())
        self.check()

    def load_local(self, spec: str) -> str:
        """Load a plugin from a ``.py`` file or an importable module name; return its plugin name."""
        path = Path(spec)
        looks_like_path = "/" in spec or "\\" in spec or spec.startswith(".")
        if spec.endswith(".py") or path.exists() or looks_like_path:
            if not path.is_file():
                raise PluginError(f"plugin file not found: {spec}")
            name = f"advgen_local_{path.stem}"
            if self.pm.get_plugin(name) is not None:
                return name
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise PluginError(f"cannot load plugin file {spec}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise PluginError(f"plugin file {spec} failed to import: {type(exc).__name__}: {exc}") from None
            source = f"file {path.resolve()}"
        else:
            name = spec
            if self.pm.get_plugin(name) is not None:
                return name
            try:
                module = importlib.import_module(spec)
            except (ImportError, TypeError, ValueError) as exc:  # TypeError: a relative name such as ".x"
                raise PluginError(f"cannot import plugin module {spec!r}: {exc}") from None
            source = f"module {spec}"
        self._register(module, name, str(getattr(module, "__version__", "local")), source)
        self._local.append(name)
        self.check()
        return name

    def _register(self, module: ModuleType, name: str, version: str, source: str) -> None:
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from None
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} could not be registered: {exc}") from None
        self._sources[name] = (version, source)
        # domains are collected per plugin so that each one is attributed to its owner
        before = set(self._domains)
        caller = self.pm.subset_hook_caller(
            "advgen_register_domains",
            remove_plugins=[p for p in self.pm.get_plugins() if p is not module],
        )
        try:
            caller(register=lambda cls: self._add_domain(cls, name))
        except PluginError:
            for domain_name in set(self._domains) - before:
                del self._domains[domain_name]
            self.pm.unregister(module)
            del self._sources[name]
            raise
        for domain_name in set(self._domains) - before:
            self._domain_owner[domain_name] = name

    def check(self) -> None:
        """Fail loudly on hook implementations that match no hookspec (e.g. a misspelt name)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"invalid plugin: {exc}") from None

    def _add_domain(self, cls: type[Domain] | DomainRef, owner: str) -> None:
        if isinstance(cls, DomainRef):
            name = cls.name
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {owner!r} registered a domain reference without a name")
        else:
            from advgen.domain import Domain

            if not (isinstance(cls, type) and issubclass(cls, Domain)):
                raise PluginError(f"plugin {owner!r} registered {cls!r}, which is not a Domain subclass")
            name = cls.name
            if not name:
                raise PluginError(f"plugin {owner!r} registered a domain without a name")
        if name in self._domains:
            other = self._domain_owner.get(name, "?")
            raise PluginError(f"domain {name!r} is registered twice (by {other!r} and {owner!r})")
        self._domains[name] = cls if isinstance(cls, DomainRef) else cls()
        self._domain_owner[name] = owner

    def _resolve(self, name: str) -> Domain:
        """The domain object, importing a registered reference's module the first time."""
        entry = self._domains[name]
        if not isinstance(entry, DomainRef):
            return entry
        from advgen.domain import Domain

        owner = self._domain_owner.get(name, "?")
        try:
            cls = getattr(importlib.import_module(entry.module), entry.attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"domain {name!r} of plugin {owner!r} cannot be loaded: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Domain)) or cls.name != name:
            raise PluginError(f"plugin {owner!r}: {entry.module}.{entry.attr} is not the Domain named {name!r}")
        domain = cls()
        self._domains[name] = domain
        return domain

    # --- lookups ---------------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def domain_names(self) -> list[str]:
        return sorted(self._domains)

    def domain(self, name: str) -> Domain:
        """The registered domain called ``name``; never loads code.

        Names that come from artifacts (checkpoints, manifests) go through here only, so a tampered
        file cannot make advgen import a module or execute a ``.py`` file it names.
        """
        if not isinstance(name, str) or not name:
            raise PluginError(f"a domain name must be a non-empty string, got {name!r}")
        if name not in self._domains and name in self.broken:
            raise PluginError(self.broken[name])
        if name not in self._domains:
            raise PluginError(
                f"unknown plugin {name!r}; available: {', '.join(self.domain_names()) or 'none'}"
            )
        return self._resolve(name)

    def load_domain(self, spec: str) -> Domain:
        """The domain a user names on the command line or in the API: a registered name, or a ``.py``
        file / module that is loaded first (the user chose to run it) and must register one domain."""
        if not isinstance(spec, str) or not spec:
            raise PluginError(f"a plugin must be a name or a path, got {spec!r}")
        if spec in self._domains:
            return self._resolve(spec)
        if spec.endswith(".py") or os.sep in spec or Path(spec).is_file():
            plugin = self.load_local(spec)
            owned = [d for d, owner in self._domain_owner.items() if owner == plugin]
            if len(owned) != 1:
                raise PluginError(
                    f"plugin file {spec} registers {len(owned)} domains ({', '.join(owned) or 'none'}); "
                    "name one of them with --plugin NAME after loading it with ADVGEN_PLUGINS"
                )
            return self._resolve(owned[0])
        return self.domain(spec)

    def domain_plugin_version(self, name: str) -> str:
        owner = self._domain_owner.get(name)
        return self._sources.get(owner, ("?", ""))[0] if owner else "?"

    def losses(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        self.hook.advgen_register_losses(register=lambda n, cls: found.setdefault(n, cls))
        return found

    def detectors(self) -> dict[str, Callable[[int], Any]]:
        found: dict[str, Callable[[int], Any]] = {}
        self.hook.advgen_register_detectors(register=lambda n, f: found.setdefault(n, f))
        return found

    def validators(self, domain: Domain, spec: dict[str, Any]) -> list[Validator]:
        """The domain's own validators plus those other plugins add for it."""
        result = list(domain.validators(spec))
        self.hook.advgen_register_validators(domain=domain.name, spec=spec, register=result.append)
        return result

    def infos(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self.pm.list_name_plugin():
            version, source = self._sources.get(name, ("?", "?"))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            domains = sorted(d for d, owner in self._domain_owner.items() if owner == name)
            out.append(PluginInfo(name, version, source, hooks, domains))
        return sorted(out, key=lambda i: (i.name != "core", i.name))


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


_MANAGER: PluginManager | None = None


def get_manager(local: list[str] | None = None) -> PluginManager:
    """The process-wide plugin manager, loaded on first use; ``local`` paths are loaded into it."""
    global _MANAGER
    if _MANAGER is None:
        manager = PluginManager()
        manager.load_default()
        _MANAGER = manager
    for spec in local or []:
        _MANAGER.load_local(spec)
    return _MANAGER


def reset_manager() -> None:
    """Forget the loaded plugins (tests use it to load a fresh set)."""
    global _MANAGER
    _MANAGER = None
