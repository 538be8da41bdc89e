"""The one registry: which modules provide bank kinds, expanders, detectors, dataset formats and executors.

Capabilities register themselves when their module is imported (a kind's package calls `register_kind` and
`register_matcher`; an expander module `register_expander`), so this file names modules, never classes: it has no
static import of any of them and sits below everything it lists. Adding a kind is one line in `KINDS`; a
third-party package adds capabilities through the `safeset.plugins` entry point group, each entry naming a
module to import (its registrations then run like ours).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

#: Bank kinds: one package each (`safeset/kinds/<name>/`: bank import, index, matcher, options).
KINDS: tuple[str, ...] = (
    "safeset.kinds.digest",
    "safeset.kinds.url",
    "safeset.kinds.urlprefix",
    "safeset.kinds.terms",
    "safeset.kinds.pdq",
)
#: Second-pass expanders.
EXPANDERS: tuple[str, ...] = (
    "safeset.expansion.duplicates",
    "safeset.expansion.neighbors",
)
#: Triage detectors (scores, classifier, concepts, rules) are built from the configuration by `safeset.triage`.
DETECTORS: tuple[str, ...] = ("safeset.triage",)
#: Dataset formats: `safeset.io.detect.FORMATS`, by name.
FORMATS: tuple[str, ...] = ("safeset.io.detect",)
#: Executors, by the name `--executor` takes: "module:class".
EXECUTORS: dict[str, str] = {
    "local": "safeset.exec.local:LocalExecutor",
    "ray": "safeset.exec.ray:RayExecutor",
}
PLUGIN_GROUP = "safeset.plugins"

_loaded = False


def load_plugins() -> None:
    """Import every capability module once (ours, then third-party entry points), so registrations have run."""
    global _loaded
    if _loaded:
        return
    for module in (*KINDS, *EXPANDERS, *DETECTORS, *FORMATS):
        importlib.import_module(module)
    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()
    _loaded = True


def executor_class(name: str) -> type:
    """The executor class `--executor NAME` means (imported only when chosen: Ray is optional)."""
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
