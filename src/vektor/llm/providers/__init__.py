"""The provider registry: the `provider` of a model_configs.json entry names a class that a
module of this package registered with `@register(name)`. Adding a provider is one new
module here; nothing else lists them.

The modules are imported on the first lookup (importing one is cheap: the local model's
llama.cpp is loaded only when it first generates). This is also where providers from
other packages would plug in, through an entry-point group `vektor.providers` read in
`_load`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
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


_P = TypeVar("_P", bound="type[ProviderClass]")
_registry: dict[str, type[ProviderClass]] = {}
_loaded = False


def register(name: str) -> Callable[[_P], _P]:
    """Class decorator: the provider that entries with `"provider": name` use."""

    def add(cls: _P) -> _P:
        if _registry.get(name, cls) is not cls:
            raise ValueError(f"provider '{name}' is registered twice")
        _registry[name] = cls
        return cls

    return add


def _load() -> None:
    """Import every module of this package once, so that each registers its provider."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True


def provider_names() -> list[str]:
    """The registered provider names, sorted."""
    _load()
    return sorted(_registry)


def provider_class(name: str) -> type[ProviderClass]:
    """The class registered under `name`; a ValueError naming the registered ones if none."""
    _load()
    cls = _registry.get(name)
    if cls is None:
        known = ", ".join(provider_names())
        raise ValueError(f"unknown provider '{name}' (registered: {known})")
    return cls
