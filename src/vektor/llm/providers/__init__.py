"""The provider registry: the `provider` of a model_configs.json entry names a class that a
module of this package registered with `@register(name)`. Adding a provider is one new
module here; nothing else lists them.

The modules are imported on the first lookup (importing one is cheap: the local model's
llama.cpp is loaded only when it first generates). Providers from other packages plug in
through the entry-point group `vektor.providers`: each entry point's name is the
provider's name and its object the class, loaded after the built-ins. A plug-in may not
take a built-in's name, and one that fails to import is reported when an entry names it.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    import aiohttp

    from vektor.llm.base import Provider
    from vektor.llm.config import DeploymentConfig
    from vektor.llm.providers.local import LocalModel


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What the providers of one balancer share: the upstream HTTP session and the
    process's local model."""

    session: aiohttp.ClientSession
    local_model: LocalModel


class ProviderClass(Protocol):
    """A registered provider class: how to build it, the context window a deployment has
    when its entry sets none (None: the balancer's default), and the entry's fields it
    cannot work without (checked when model_configs.json is read)."""

    default_context_window: ClassVar[int | None]
    required_fields: ClassVar[tuple[str, ...]]

    @classmethod
    def build(cls, config: DeploymentConfig, context: ProviderContext) -> Provider:
        """The provider of one deployment."""
        ...


ENTRY_POINT_GROUP = "vektor.providers"
PROTOCOL_ATTRIBUTES = ("build", "default_context_window", "required_fields")
_P = TypeVar("_P", bound="type[ProviderClass]")
_registry: dict[str, type[ProviderClass]] = {}
_broken: dict[str, str] = {}  # plug-ins that could not be loaded, and why
_loaded = False
logger = logging.getLogger(__name__)


def register(name: str) -> Callable[[_P], _P]:
    """Class decorator: the provider that entries with `"provider": name` use."""

    def add(cls: _P) -> _P:
        if _registry.get(name, cls) is not cls:
            raise ValueError(f"provider '{name}' is registered twice")
        _registry[name] = cls
        return cls

    return add


def _load() -> None:
    """Import every module of this package once, so that each registers its provider, then
    the plug-ins."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        for point in entry_points(group=ENTRY_POINT_GROUP):
            _load_plugin(point.name, point.load)
        _loaded = True


def _load_plugin(name: str, load: Callable[[], object]) -> None:
    """Register one plug-in's class; a failure is logged and kept for `provider_class`."""
    if name in _registry:
        _broken[name] = "a built-in provider has that name"
        logger.error("provider plug-in '%s' ignored: a built-in has that name", name)
        return
    try:
        cls = load()
        missing = [a for a in PROTOCOL_ATTRIBUTES if not hasattr(cls, a)]
        if not isinstance(cls, type) or missing:
            raise TypeError(f"{cls!r} is not a provider class (missing {', '.join(missing)})")
    except Exception as exc:  # any error of foreign code: the plug-in is unusable, not Vektor
        _broken[name] = f"{type(exc).__name__}: {exc}"
        logger.error("provider plug-in '%s' could not be loaded: %s", name, _broken[name])
        return
    register(name)(cls)


def provider_names() -> list[str]:
    """The registered provider names, sorted."""
    _load()
    return sorted(_registry)


def provider_class(name: str) -> type[ProviderClass]:
    """The class registered under `name`; a ValueError naming the registered ones if none."""
    _load()
    cls = _registry.get(name)
    if cls is None and name in _broken:
        raise ValueError(f"provider plug-in '{name}' could not be loaded ({_broken[name]})")
    if cls is None:
        known = ", ".join(provider_names())
        raise ValueError(f"unknown provider '{name}' (registered: {known})")
    return cls
