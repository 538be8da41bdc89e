"""One place that imports every bank kind and matcher module, so their registrations run.

A capability adds its module to PLUGIN_MODULES; `safeset.banks.store.KINDS` and
`safeset.match.base.MATCHERS` are complete after `load_plugins()`.
"""

from __future__ import annotations

import importlib

PLUGIN_MODULES: tuple[str, ...] = (
    "safeset.match.exact",
    "safeset.match.duplicates",
    "safeset.match.prefix",
    "safeset.match.terms",
    "safeset.match.neighbors",
    "safeset.banks.pdq",
    "safeset.match.pdq",
)

_loaded = False


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    for module in PLUGIN_MODULES:
        importlib.import_module(module)
    _loaded = True
