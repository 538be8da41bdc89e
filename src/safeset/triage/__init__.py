"""Triage detectors built from a scan's options (see base.py)."""

from __future__ import annotations

from safeset.errors import SafesetError
from safeset.triage.base import Detector, ScoreDetector
from safeset.triage.options import TriageOptions
from safeset.triage.rules import RuleDetector

TRIAGE_DETECTORS = ("score", "model", "concept", "rule")


def build_detectors(options: TriageOptions) -> tuple[list[Detector], list[RuleDetector]]:
    """Score, model and concept detectors, then rules (evaluated last, in order, over everything before them)."""
    action = options.action
    detectors: list[Detector] = [ScoreDetector(spec, action) for spec in options.scores]
    if options.model is not None:
        from safeset.triage.model import OnnxModelDetector

        detectors.append(OnnxModelDetector(options.model, options.model_threshold, options.model_column, action))
    if options.concepts is not None:
        from safeset.triage.concepts import ConceptDetector

        detectors.append(ConceptDetector(options.concepts, action))
    rules: list[RuleDetector] = []
    for index, spec in enumerate(options.rules):
        rule = RuleDetector(spec, index, action)
        if any(r.label == rule.label for r in rules):
            raise SafesetError(f"two rules are named {rule.label!r}")
        earlier = {f"rule:{r.label}" for r in rules}
        later = {ref for ref in rule.references if ref.startswith("rule:") and ref not in earlier}
        if later:
            raise SafesetError(f"rule {rule.label!r} refers to {', '.join(sorted(later))}, not an earlier rule")
        rules.append(rule)
    return detectors, rules


def check_rule_detectors(rules: list[RuleDetector], known: set[str]) -> None:
    """Refuse a rule naming a detector that no matcher or triage detector produces (it would never match)."""
    for rule in rules:
        unknown = sorted(
            ref.split(":", 1)[1]
            for ref in rule.references
            if ref.startswith("detector:") and ref.split(":", 1)[1] not in known
        )
        if unknown:
            raise SafesetError(
                f"rule {rule.label!r} names detector {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
