"""Hash-only verification services: adapters that send hashes and URLs (never image bytes) to parties allowed
to confirm a candidate (C3P Arachnid Shield, Meta HMA / OpenMediaMatch, Microsoft PhotoDNA Cloud)."""

from __future__ import annotations

import importlib

from safeset.services.base import SERVICES, VerificationService, register_service

#: service name -> the adapter module that registers it when imported; imported on first use, so that
#: `import safeset.services` costs nothing and a missing optional client only matters to its own service
ADAPTERS: dict[str, str] = {
    "arachnid": "safeset.services.arachnid",
    "hma": "safeset.services.hma",
    "photodna": "safeset.services.photodna",
}


def load_services() -> dict[str, object]:
    """Import every adapter module (each registers itself in `SERVICES`) and return the registry:
    name -> factory(endpoint | None)."""
    for module in ADAPTERS.values():
        importlib.import_module(module)
    return SERVICES  # type: ignore[return-value]


def service(name: str, endpoint: str | None = None) -> VerificationService:
    """The adapter called `name`, pointed at `endpoint` (None: the service's environment variable or default)."""
    from safeset.errors import SafesetError

    factories = load_services()
    if name not in factories:
        raise SafesetError(f"unknown verification service {name!r}; known: {', '.join(sorted(factories))}")
    return SERVICES[name](endpoint)


__all__ = ["ADAPTERS", "SERVICES", "load_services", "register_service", "service"]
