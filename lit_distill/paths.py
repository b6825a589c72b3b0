"""Path resolution shared by every layer: ``~`` expansion and registered URL-like schemes (``demo://``).

Core code (model, data, checkpoint) resolves user paths here and never imports the demo: a scheme maps to a
resolver that is imported only when a path with that scheme is used. The package registers ``demo://`` (the
embedded default's assets, built on first use by ``lit_distill.demo.assets``); a plugin can register its own
scheme with ``register_scheme``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

DEMO_SCHEME = "demo://"

# scheme -> resolver, or "module:function" imported on first use (keeps core modules free of demo imports).
_RESOLVERS: dict[str, Callable[[str], str] | str] = {DEMO_SCHEME: "lit_distill.demo.assets:resolve_path"}


def register_scheme(scheme: str, resolver: Callable[[str], str] | str) -> None:
    """Resolve paths starting with ``scheme`` (e.g. ``"mylab://"``) with ``resolver(path) -> local path``.

    ``resolver`` may be a ``"module:function"`` string, imported the first time such a path is resolved.
    """
    if not scheme.endswith("://"):
        raise ValueError(f"a scheme ends with '://', got {scheme!r}")
    _RESOLVERS[scheme] = resolver


def scheme_of(path: object) -> str | None:
    """The registered scheme ``path`` starts with, or None (plain paths, hub ids, non-strings)."""
    if not isinstance(path, str):
        return None
    return next((s for s in _RESOLVERS if path.startswith(s)), None)


def resolve_path(path):
    """A registered scheme's local path (``demo://x`` builds the demo assets once); ``~`` expanded otherwise.

    Non-strings (None, already-resolved objects) pass through unchanged.
    """
    scheme = scheme_of(path)
    if scheme is None:
        return os.path.expanduser(path) if isinstance(path, str) else path
    resolver = _RESOLVERS[scheme]
    if isinstance(resolver, str):
        module, func = resolver.split(":")
        resolver = _RESOLVERS[scheme] = getattr(importlib.import_module(module), func)
    return resolver(path)
