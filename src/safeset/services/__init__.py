"""Hash-only verification services: adapters that send hashes and URLs (never image bytes) to parties allowed
to confirm a candidate (C3P Arachnid Shield, Meta HMA / OpenMediaMatch, Microsoft PhotoDNA Cloud)."""

from __future__ import annotations

import importlib

from safeset.services.base import SERVICES, VerificationService, register_service

#: adapter modules and the factory each registers under its service name; imported on first use, so that
#: `import safeset.services` costs nothing and a missing optional client only matters to its own service
ADAPTERS: dict[str, tuple[str, str]] = {
    "arachnid": ("safeset.services.arachnid", "make_arachnid"),
    "hma": ("safeset.services.hma", "make_hma"),
    "photodna": ("safeset.services.photodna", "make_photodna"),
}


def load_services() -> dict[str, object]:
    """Register every adapter in `SERVICES` (idempotent) and return it: name -> factory(endpoint | None)."""
    for name, (module, factory) in ADAPTERS.items():
        if name not in SERVICES:
            register_service(name, getattr(importlib.import_module(module), factory))
    return SERVICES  # type: ignore[return-value]


def service(name: str, endpoint: str | None = None) -> VerificationService:
    """The adapter called `name`, pointed at `endpoint` (None: the service's environment variable or default)."""
    from safeset.errors import SafesetError

    factories = load_services()
    if name not in factories:
        raise SafesetError(f"unknown verification service {name!r}; known: {', '.join(sorted(factories))}")
    return SERVICES[name](endpoint)


__all__ = ["ADAPTERS", "SERVICES", "load_services", "register_service", "service"]
