"""Plugin discovery and the registries that hooks fill.

Built-ins are listed in DEFAULT_PLUGINS and registered exactly as third-party plugins are;
third-party plugins come through the ``harness`` entry-point group. Each plugin is loaded
in its own try/except, so one broken plugin is reported and the others still load.
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable

import pluggy

from harness import hookspecs
from harness.methods import Method

ENTRY_POINT_GROUP = "harness"
DISABLE_AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
# Comma-separated plugin modules to load as well, as PYTEST_PLUGINS does; worker processes inherit it.
EXTRA_PLUGINS_ENV = "HARNESS_PLUGINS"

DEFAULT_PLUGINS = (
    "harness_nb",
    "harness_nb_aug",
    "harness_knn_embed",
    "harness_zeroshot",
    "harness_finetune",
    "harness_llm_icl",
)


class PluginError(Exception):
    """A plugin registered something invalid (for example a duplicate method name)."""


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin" or "entry point <dist>"
    version: str
    module: str
    error: str | None = None
    error_traceback: str | None = None


@dataclass
class Registry:
    """What the loaded plugins registered, with the plugin each item came from."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    method_plugins: dict[str, str] = field(default_factory=dict)
    loaders: dict[str, Callable[..., Any]] = field(default_factory=dict)
    report_formats: dict[str, Callable[..., Any]] = field(default_factory=dict)


class HarnessPluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__("harness")
        self.add_hookspecs(hookspecs)
        self.plugin_info: dict[str, PluginInfo] = {}
        self._registry: Registry | None = None

    def load_module(self, module_name: str, source: str, version: str) -> None:
        """Import and register one plugin module; record the failure instead of raising."""
        info = PluginInfo(name=module_name, source=source, version=version, module=module_name)
        self.plugin_info[module_name] = info
        try:
            module = importlib.import_module(module_name)
            self.register(module, name=module_name)
        except Exception as exc:  # a broken plugin must not stop the others
            info.error = f"{type(exc).__name__}: {exc}"
            info.error_traceback = traceback.format_exc()

    def register_module(self, module: ModuleType | object, name: str, source: str = "in-process") -> None:
        """Register an already imported plugin object (tests and embedding applications)."""
        self.plugin_info[name] = PluginInfo(name=name, source=source, version="", module=name)
        self.register(module, name=name)
        self._registry = None

    def load_entry_points(self) -> None:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            dist_name = dist.name if dist else "?"
            dist_version = dist.version if dist else ""
            info = PluginInfo(
                name=entry_point.name,
                source=f"entry point of {dist_name}",
                version=dist_version,
                module=entry_point.value,
            )
            self.plugin_info[entry_point.name] = info
            if self.get_plugin(entry_point.name) is not None or self.is_blocked(entry_point.name):
                continue
            try:
                self.register(entry_point.load(), name=entry_point.name)
            except Exception as exc:
                info.error = f"{type(exc).__name__}: {exc}"
                info.error_traceback = traceback.format_exc()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registry:
        registry = Registry()
        for impl in self.hook.register_methods.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(method_class: type[Method], _plugin: str = plugin_name) -> None:
                _check_method_class(method_class, _plugin)
                name = method_class.name
                if name in registry.methods:
                    raise PluginError(
                        f"method name {name!r} is registered twice: by plugin "
                        f"{registry.method_plugins[name]!r} and by plugin {_plugin!r}"
                    )
                registry.methods[name] = method_class
                registry.method_plugins[name] = _plugin

            impl.function(register=register)
        self.hook.register_dataset_loaders(register=registry.loaders.__setitem__)
        self.hook.register_report_formats(register=registry.report_formats.__setitem__)
        return registry

    def plugin_version(self, plugin_name: str) -> str:
        info = self.plugin_info.get(plugin_name)
        return info.version if info else ""


def _check_method_class(method_class: Any, plugin: str) -> None:
    if not (isinstance(method_class, type) and issubclass(method_class, Method)):
        raise PluginError(f"plugin {plugin!r} registered {method_class!r}, which is not a harness.methods.Method subclass")
    if not getattr(method_class, "name", None):
        raise PluginError(f"plugin {plugin!r} registered {method_class.__name__} without a 'name'")


def make_plugin_manager(autoload: bool | None = None, builtins: bool = True) -> HarnessPluginManager:
    """A fresh plugin manager with the built-ins and the modules named in $HARNESS_PLUGINS
    (unless ``builtins`` is False) and, unless disabled, entry-point plugins."""
    from harness import __version__

    pm = HarnessPluginManager()
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
