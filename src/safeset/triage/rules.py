"""Combination rules: a boolean expression over what the batch's other checks found.

  [NAME=] EXPR [-> ACTION]
  EXPR   := TERM (OR TERM)* ;  TERM := FACTOR (AND FACTOR)* ;  FACTOR := NOT FACTOR | ( EXPR ) | ATOM
  ATOM   := COLUMN OP NUMBER          punsafe > 0.95         (a metadata column; null never matches)
          | bank:NAME                 the row has a finding from bank NAME (any kind: md5, url, term, ...)
          | detector:NAME             ... from a detector (md5, url, score, model, concept, rule, ...)
          | rule:NAME                 ... from an earlier rule

Re-LAION's "research" rule is `research=punsafe > 0.95 AND bank:T -> remove` with T a bank of keywords.
A bank named by a rule is loaded even when it is not one of the scan's `--bank`s; it then feeds rules only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from safeset.errors import SafesetError
from safeset.kinds.base import Hits
from safeset.policy.actions import Action
from safeset.signals.compute import Signals
from safeset.triage.base import COMPARISONS, Detector, numeric_column, parse_action

_TOKEN = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<ref>(?:bank|detector|rule):[A-Za-z0-9][\w.\-]*)"
    r"|(?P<cmp>[A-Za-z_][\w.]*\s*(?:>=|<=|==|!=|>|<)\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z]+))"
)
_NAME = re.compile(r"^\s*([A-Za-z][\w.-]*)\s*=(?!=)\s*(.*)$", re.S)

#: Per batch: hit masks by reference ("bank:NAME", "detector:NAME", "rule:NAME").
HitMasks = dict[str, np.ndarray]
Evaluator = Callable[[Signals, HitMasks, int], np.ndarray]


@dataclass
class _Parsed:
    evaluate: Evaluator
    columns: set[str]
    references: set[str]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise SafesetError(f"cannot read rule {text!r} at {text[position:].strip()!r}")
            kind = match.lastgroup or ""
            value = match.group(kind).strip()
            if kind == "word":
                if value.upper() not in ("AND", "OR", "NOT"):
                    raise SafesetError(f"rule {text!r}: unknown word {value!r} (AND, OR, NOT, bank:, detector:)")
                value = value.upper()
            self.tokens.append((kind, value))
            position = match.end()
        self.index = 0
        self.columns: set[str] = set()
        self.references: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise SafesetError(f"rule {self.text!r} ends too early")
        self.index += 1
        return token

    def parse(self) -> _Parsed:
        if not self.tokens:
            raise SafesetError("empty rule")
        evaluate = self.expression()
        if self.peek() is not None:
            raise SafesetError(f"rule {self.text!r}: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return _Parsed(evaluate, self.columns, self.references)

    def expression(self) -> Evaluator:
        parts = [self.term()]
        while self.peek() == ("word", "OR"):
            self.take()
            parts.append(self.term())
        if len(parts) == 1:
            return parts[0]
        return lambda s, m, n: np.logical_or.reduce([p(s, m, n) for p in parts])

    def term(self) -> Evaluator:
        parts = [self.factor()]
        while self.peek() == ("word", "AND"):
            self.take()
            parts.append(self.factor())
        if len(parts) == 1:
            return parts[0]
        return lambda s, m, n: np.logical_and.reduce([p(s, m, n) for p in parts])

    def factor(self) -> Evaluator:
        kind, value = self.take()
        if (kind, value) == ("word", "NOT"):
            inner = self.factor()
            return lambda s, m, n: ~inner(s, m, n)
        if (kind, value) == ("paren", "("):
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise SafesetError(f"rule {self.text!r}: missing ')'")
            return inner
        if kind == "ref":
            self.references.add(value)
            return lambda s, m, n: m.get(value, np.zeros(n, dtype=bool))
        if kind == "cmp":
            from safeset.triage.base import parse_comparison

            column, op, number = parse_comparison(value)
            self.columns.add(column)

            def compare(s: Signals, m: HitMasks, n: int) -> np.ndarray:
                with np.errstate(invalid="ignore"):
                    return COMPARISONS[op](numeric_column(s, column), number)

            return compare
        raise SafesetError(f"rule {self.text!r}: unexpected {value!r}")


class RuleDetector(Detector):
    detector = "rule"

    def __init__(self, spec: str, index: int = 0, default_action: Action = Action.REVIEW) -> None:
        body, action = parse_action(spec, default_action)
        named = _NAME.match(body)
        name, expression = (named.group(1), named.group(2)) if named else (f"rule{index + 1}", body)
        super().__init__(name, action)
        self.expression = " ".join(expression.split())
        parsed = _Parser(self.expression).parse()
        self._evaluate = parsed.evaluate
        self._columns = tuple(sorted(parsed.columns))
        self.references = parsed.references

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    @property
    def banks(self) -> set[str]:
        return {r.split(":", 1)[1] for r in self.references if r.startswith("bank:")}

    def detect(self, signals: Signals) -> list[Hits]:  # pragma: no cover - rules need the batch's hits
        raise NotImplementedError("rules are evaluated with evaluate(signals, masks)")

    def evaluate(self, signals: Signals, masks: HitMasks) -> list[Hits]:
        n = len(signals.batch)
        positions = np.flatnonzero(self._evaluate(signals, masks, n)).astype(np.int64)
        if not len(positions):
            return []
        values = [(c, numeric_column(signals, c)[positions]) for c in self._columns]
        evidence = []
        for i in range(len(positions)):
            shown = ", ".join(f"{c}={v[i]:.6g}" for c, v in values)
            evidence.append(f"{self.expression}" + (f" ({shown})" if shown else ""))
        return [Hits(positions, evidence, self.detector)]
