"""Plugin discovery and the registries that hooks fill.

Built-ins are listed in DEFAULT_PLUGINS and registered exactly as third-party plugins are;
third-party plugins come through the ``harness`` entry-point group. Each plugin is loaded
in its own try/except, so one broken plugin is reported and the others still load; a plugin
whose registration hook raises is reported the same way and left out (blocked), whatever it
registered before it raised included.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Generic, TypeVar

import pluggy

from harness import hookspecs
from harness.errors import HarnessError
from harness.methods import Method
from harness.strategies import Strategy

ENTRY_POINT_GROUP = "harness"
DISABLE_AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
# Comma-separated plugin modules to load as well, as PYTEST_PLUGINS does; worker processes inherit it.
EXTRA_PLUGINS_ENV = "HARNESS_PLUGINS"

# The core's own readers and report writers: always registered, through the same hooks as any plugin.
CORE_PLUGINS = (
    "harness.sources",
    "harness.report",
    "harness.strategies",  # random: the nested stratified slices, the default
)
# The built-in methods, each a package written as a third party would write it.
DEFAULT_PLUGINS = (
    "harness_nb",
    "harness_nb_aug",
    "harness_knn_embed",
    "harness_zeroshot",
    "harness_finetune",
    "harness_setfit",
    "harness_llm_icl",
    "harness_self_train",
    "harness_linear",
    "harness_strategies",
)


class PluginError(HarnessError):
    """A plugin registered something invalid (for example a duplicate method name)."""


@dataclass
class PluginInfo:
    name: str
    source: str  # "core", "builtin", "entry point of <dist>", "$HARNESS_PLUGINS" or "in-process"
    version: str
    error: str | None = None


T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named items of one kind (methods, readers, report formats) and the plugin each came from.

    ``register`` checks the item (``check`` returns what is wrong with it, or None) and refuses a
    name taken by another plugin, naming both. Compared and hashed by identity: a registry is
    rebuilt whenever a plugin is registered, and memoised loaders key on it.
    """

    def __init__(self, kind: str, check: Callable[[str, Any], str | None]) -> None:
        self.kind = kind
        self._check = check
        self._items: dict[str, T] = {}
        self.origins: dict[str, str] = {}  # name -> plugin that registered it

    def register(self, name: str, item: T, plugin: str) -> None:
        problem = self._check(name, item)
        if problem:
            raise PluginError(f"plugin {plugin!r} registered {problem}")
        if name in self._items:
            raise PluginError(
                f"{self.kind} name {name!r} is registered twice: by plugin {self.origins[name]!r} and by plugin {plugin!r}"
            )
        self._items[name] = item
        self.origins[name] = plugin

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _check_method(name: str, item: Any) -> str | None:
    if not (isinstance(item, type) and issubclass(item, Method)):
        return f"{item!r}, which is not a harness.methods.Method subclass"
    if not name:
        return f"{item.__name__} without a 'name'"
    return None


def _check_strategy(name: str, item: Any) -> str | None:
    if not (isinstance(item, type) and issubclass(item, Strategy)):
        return f"{item!r}, which is not a harness.strategies.Strategy subclass"
    if not name:
        return f"{item.__name__} without a 'name'"
    return None


def _check_callable(kind: str) -> Callable[[str, Any], str | None]:
    def check(name: str, item: Any) -> str | None:
        if not isinstance(name, str) or not name:
            return f"a {kind} without a name: {name!r}"
        return None if callable(item) else f"{kind} {name!r} as {item!r}, which is not callable"

    return check


@dataclass(eq=False)
class Registries:
    """What the loaded plugins registered."""

    methods: Registry[type[Method]]
    readers: Registry[Callable[..., Any]]  # file format -> reader(stream, name, source)
    report_formats: Registry[Callable[..., Any]]  # file suffix -> writer(table, path)
    strategies: Registry[type[Strategy]]  # query strategies (harness.strategies)


class HarnessPluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__("harness")
        self.add_hookspecs(hookspecs)
        self.plugin_info: dict[str, PluginInfo] = {}
        self._registry: Registries | None = None

    def load_module(self, module_name: str, source: str, version: str) -> None:
        """Import and register one plugin module; record the failure instead of raising."""
        info = PluginInfo(name=module_name, source=source, version=version)
        self.plugin_info[module_name] = info
        try:
            module = importlib.import_module(module_name)
            self.register(module, name=module_name)
        except Exception as exc:  # a broken plugin must not stop the others
            info.error = _one_line(exc)
        self._registry = None

    def register_module(self, module: ModuleType | object, name: str, source: str = "in-process") -> None:
        """Register an already imported plugin object (tests and embedding applications)."""
        self.plugin_info[name] = PluginInfo(name=name, source=source, version="")
        self.register(module, name=name)
        self._registry = None

    def load_entry_points(self) -> None:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            info = PluginInfo(
                name=entry_point.name,
                source=f"entry point of {dist.name if dist else '?'}",
                version=dist.version if dist else "",
            )
            self.plugin_info[entry_point.name] = info
            if self.get_plugin(entry_point.name) is not None or self.is_blocked(entry_point.name):
                continue
            try:
                self.register(entry_point.load(), name=entry_point.name)
            except Exception as exc:
                info.error = _one_line(exc)
        self._registry = None

    @property
    def registry(self) -> Registries:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registries:
        """The registries; a plugin whose registration hook raises is recorded, blocked, and the
        registries collected again without it (so nothing it half-registered stays)."""
        while True:
            try:
                return self._collect_once()
            except _RegistrationFailed as failed:
                info = self.plugin_info.setdefault(failed.plugin, PluginInfo(failed.plugin, "in-process", ""))
                info.error = failed.error
                self.set_blocked(failed.plugin)

    def _collect_once(self) -> Registries:
        registries = Registries(
            methods=Registry("method", _check_method),
            readers=Registry("reader", _check_callable("reader")),
            report_formats=Registry("report format", _check_callable("report format")),
            strategies=Registry("strategy", _check_strategy),
        )
        for impl in self.hook.register_methods.get_hookimpls():
            _call_registration(impl, lambda cls, _plugin=impl.plugin_name: registries.methods.register(
                getattr(cls, "name", ""), cls, _plugin))
        for impl in self.hook.register_dataset_loaders.get_hookimpls():
            _call_registration(impl, lambda name, reader, _plugin=impl.plugin_name: registries.readers.register(
                name, reader, _plugin))
        for impl in self.hook.register_report_formats.get_hookimpls():
            _call_registration(impl, lambda name, writer, _plugin=impl.plugin_name: registries.report_formats.register(
                name, writer, _plugin))
        for impl in self.hook.register_strategies.get_hookimpls():
            _call_registration(impl, lambda cls, _plugin=impl.plugin_name: registries.strategies.register(
                getattr(cls, "name", ""), cls, _plugin))
        return registries

    def plugin_version(self, plugin_name: str) -> str:
        info = self.plugin_info.get(plugin_name)
        return info.version if info else ""


class _RegistrationFailed(Exception):
    def __init__(self, plugin: str, error: str) -> None:
        super().__init__(error)
        self.plugin, self.error = plugin, error


def _call_registration(impl: pluggy.HookImpl, register: Callable[..., None]) -> None:
    """Call one plugin's registration hook. PluginError (a name two plugins registered, an item
    that is no method) stays an error of the whole set of plugins, as it concerns two of them or
    says what to fix; anything else the hook raises leaves that plugin out."""
    try:
        impl.function(register=register)
    except PluginError:
        raise
    except Exception as exc:
        raise _RegistrationFailed(impl.plugin_name, f"{impl.function.__name__} raised {_one_line(exc)}") from exc


def _one_line(exc: Exception) -> str:
    """Why a plugin failed to load; the traceback only when the message alone says nothing."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else traceback.format_exc(limit=-1).strip().splitlines()[-1]


def make_plugin_manager(autoload: bool | None = None, builtins: bool = True) -> HarnessPluginManager:
    """A fresh plugin manager with the core readers and report writers, the built-in methods and
    the modules named in $HARNESS_PLUGINS (unless ``builtins`` is False) and, unless disabled,
    entry-point plugins."""
    from harness import __version__

    pm = HarnessPluginManager()
    for module_name in CORE_PLUGINS:
        pm.load_module(module_name, source="core", version=__version__)
    if builtins:
        for module_name in DEFAULT_PLUGINS:
            pm.load_module(module_name, source="builtin", version=__version__)
        for module_name in filter(None, (m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
            pm.load_module(module_name, source=f"${EXTRA_PLUGINS_ENV}", version="")
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        pm.load_entry_points()
    pm.check_pending()
    return pm


_default_pm: HarnessPluginManager | None = None


def get_plugin_manager() -> HarnessPluginManager:
    """The process-wide plugin manager, built on first use."""
    global _default_pm
    if _default_pm is None:
        _default_pm = make_plugin_manager()
    return _default_pm
