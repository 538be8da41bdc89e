"""Triage detectors: score columns, an ONNX head on embeddings, concept scoring with special care, and rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.errors import ColumnError, SafesetError
from tests.conftest import laion_table, write_list
from tests.embed.layout import random_unit, write_laion_layout
from tests.helpers import findings, scan


def by_detector(run_dir: Path, detector: str) -> dict[str, dict]:
    return {f["key"]: f for f in findings(run_dir) if f["detector"] == detector}


@pytest.fixture
def url_bank(tmp_path: Path) -> Path:
    """A stand-in URL list hitting rows 90–99 and 0–4 of laion_table(100) (so some have punsafe > 0.95)."""
    table = laion_table(100)
    urls = [table["URL"][i].as_py() for i in [*range(90, 100), *range(5)]]
    banks = tmp_path / "banks"
    BankStore(banks).add("T", "url", write_list(tmp_path / "t.txt", urls), action="review")
    BankStore(banks).add("other", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    return banks


@pytest.fixture
def parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "part-00000.parquet"
    pq.write_table(laion_table(100), path)
    return path


def test_score_column_threshold(parquet_file: Path, url_bank: Path, tmp_path: Path) -> None:
    summary = scan(
        parquet_file, url_bank, tmp_path / "run", policy={"triage": {"scores": ["punsafe>0.95", "pwatermark >= 0.9"]}}
    )
    table = laion_table(100)
    punsafe = np.asarray(table["punsafe"].to_numpy())
    pwatermark = np.asarray(table["pwatermark"].to_numpy())
    rows = [f for f in findings(tmp_path / "run") if f["detector"] == "score"]
    assert sorted(f["row"] for f in rows if f["bank"] == "punsafe>0.95") == np.flatnonzero(punsafe > 0.95).tolist()
    assert (
        sorted(f["row"] for f in rows if f["bank"] == "pwatermark>=0.9") == np.flatnonzero(pwatermark >= 0.9).tolist()
    )
    assert all(f["action"] == "review" for f in rows)
    assert any(f["evidence"].startswith("punsafe=0.9") for f in rows)
    assert summary["findings_by_detector"]["score"] == len(rows)


def test_missing_score_column_is_refused_before_work(parquet_file: Path, url_bank: Path, tmp_path: Path) -> None:
    with pytest.raises(ColumnError, match="'p_unsafe' not found; columns present: URL, TEXT"):
        scan(parquet_file, url_bank, tmp_path / "run", policy={"triage": {"scores": ["p_unsafe>0.9"]}})
    with pytest.raises(SafesetError, match="expected COLUMN OP NUMBER"):
        scan(parquet_file, url_bank, tmp_path / "run2", policy={"triage": {"scores": ["punsafe is high"]}})


def test_relaion_research_rule(parquet_file: Path, url_bank: Path, tmp_path: Path) -> None:
    """`punsafe > 0.95 AND bank:T`: only rows in both; T may feed the rule without being reported itself."""
    rule = "research=punsafe > 0.95 AND bank:T -> remove"
    summary = scan(
        parquet_file, url_bank, tmp_path / "run", bank_names=("other",), policy={"triage": {"rules": [rule]}}
    )
    rows = [f for f in findings(tmp_path / "run")]
    assert {f["detector"] for f in rows} == {"rule"}  # bank T only fed the rule
    assert sorted(f["row"] for f in rows) == [96, 97, 98, 99]  # punsafe = i/100 > 0.95 and in T
    assert all(f["action"] == "remove" and f["bank"] == "research" for f in rows)
    assert rows[0]["evidence"] == "punsafe > 0.95 AND bank:T (punsafe=0.96)"
    assert summary["rows_by_action"] == {"remove": 4}
    # With T among the reported banks its own findings appear too, and rules can combine detectors.
    rules = ["research=punsafe > 0.95 AND bank:T", "either=NOT (detector:url OR punsafe < 0.99) -> review"]
    scan(parquet_file, url_bank, tmp_path / "run2", policy={"triage": {"rules": rules}})
    rows = findings(tmp_path / "run2")
    assert sorted(f["row"] for f in rows if f["bank"] == "T") == [0, 1, 2, 3, 4, *range(90, 100)]
    assert sorted(f["row"] for f in rows if f["bank"] == "either") == []  # rows ≥ 0.99 are all in T
    assert sorted(f["row"] for f in rows if f["bank"] == "research") == [96, 97, 98, 99]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("punsafe > 0.9 AND bank:nosuch", "names bank nosuch, which is not in"),
        ("punsafe > 0.9 AND detector:telepathy", "names detector telepathy; known:"),
        ("punsafe > 0.9 AND", "ends too early"),
        ("(punsafe > 0.9", "ends too early"),
        ("(punsafe > 0.9 bank:T", "missing"),
        ("punsafe > 0.9 XOR bank:T", "unknown word 'XOR'"),
        ("a=rule:b AND punsafe > 0.1", "not an earlier rule"),
    ],
)
def test_bad_rules_are_refused(parquet_file: Path, url_bank: Path, tmp_path: Path, rule: str, message: str) -> None:
    with pytest.raises(SafesetError, match=message):
        scan(parquet_file, url_bank, tmp_path / "run", policy={"triage": {"rules": [rule]}})


def tiny_nsfw_head(path: Path, weights: np.ndarray, bias: float) -> Path:
    """A stand-in for an exported classifier head: sigmoid(x · w + b), built with onnx.helper (no download)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["embedding", "w"], ["logit0"]),
            helper.make_node("Add", ["logit0", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["score"]),
        ],
        "head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", len(weights)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n", 1])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32).reshape(-1, 1), "w"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_model_on_embeddings(tmp_path: Path, url_bank: Path) -> None:
    rng = np.random.default_rng(21)
    parts = [random_unit(120, 16, rng), random_unit(80, 16, rng)]
    root = write_laion_layout(tmp_path / "laion", parts)
    weights = rng.standard_normal(16) * 4
    model = tiny_nsfw_head(tmp_path / "head.onnx", weights, -1.0)
    scan(root, url_bank, tmp_path / "run", policy={"triage": {"model": str(model), "model_threshold": 0.8}})
    hits = by_detector(tmp_path / "run", "model")
    expected = []
    for number, part in enumerate(parts):
        scores = 1 / (1 + np.exp(-(part.astype(np.float16).astype(np.float64) @ weights - 1.0)))
        expected += [f"{number:05d}{i:04d}" for i in np.flatnonzero(scores > 0.8)]
    assert 0 < len(expected) < 200 and sorted(hits) == sorted(expected)
    assert all(
        f["bank"] == "head.onnx" and re.match(r"head.onnx score [01]\.\d{4} > 0.8$", f["evidence"])
        for f in hits.values()
    )
    wrong = tiny_nsfw_head(tmp_path / "wide.onnx", np.ones(32), 0.0)
    with pytest.raises(SafesetError, match=r"wide\.onnx: the model takes 32-d inputs, the embeddings are 16-d"):
        scan(root, url_bank, tmp_path / "run2", policy={"triage": {"model": str(wrong)}})


def test_concepts_with_special_care_tighten_the_others(tmp_path: Path, url_bank: Path) -> None:
    """Safety-checker pattern: a special-care hit lowers every other concept's bar by `adjustment`."""
    rng = np.random.default_rng(22)
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0].T  # orthonormal rows
    concept, special, other = basis[0], basis[1], basis[2]

    def row(c: float, s: float) -> np.ndarray:
        return c * concept + s * special + np.sqrt(1 - c * c - s * s) * other

    vectors = np.array(
        [
            row(0.30, 0.0),  # clearly over the concept's 0.25: flagged
            row(0.245, 0.0),  # just under: not flagged on its own
            row(0.10, 0.9),  # special care alone never flags
            row(0.245, 0.5),  # just under, but special care (0.5 > 0.3) lowers the bar by 0.01: flagged
        ]
    )
    root = write_laion_layout(tmp_path / "laion", [vectors])
    spec = {
        "adjustment": 0.01,
        "concepts": [{"name": "benign-concept-a", "threshold": 0.25, "vector": concept.tolist()}],
        "special_care": [{"name": "benign-special-b", "threshold": 0.3, "vector": special.tolist()}],
    }
    stored = vectors.astype(np.float16).astype(np.float64)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    assert stored[3] @ concept < 0.25 < stored[3] @ concept + 0.01  # the planted case is what it claims
    concepts = tmp_path / "concepts.json"
    concepts.write_text(json.dumps(spec))
    scan(root, url_bank, tmp_path / "run", policy={"triage": {"concepts": str(concepts)}})
    hits = by_detector(tmp_path / "run", "concept")
    assert sorted(hits) == ["000000000", "000000003"]
    assert "special care benign-special-b tightened by 0.01" in hits["000000003"]["evidence"]
    spec["adjustment"] = 0.0
    concepts.write_text(json.dumps(spec))
    scan(root, url_bank, tmp_path / "run2", policy={"triage": {"concepts": str(concepts)}})
    assert sorted(by_detector(tmp_path / "run2", "concept")) == ["000000000"]
    np.savez(tmp_path / "c.npz", names=["x"], vectors=np.ones((1, 8)), thresholds=[0.2], special=[False])
    with pytest.raises(SafesetError, match="concept vectors are 8-d, the embeddings are 16-d"):
        scan(root, url_bank, tmp_path / "run3", policy={"triage": {"concepts": str(tmp_path / "c.npz")}})


def test_research_rule_with_a_term_bank(tmp_path: Path) -> None:
    """The Re-LAION rule as meant: a high score AND a caption matching a keyword (term) bank."""
    table = laion_table(100)
    captions = [f"caption number {i}" + (" zorblax" if i % 3 == 0 else "") for i in range(100)]
    table = table.set_column(table.schema.get_field_index("TEXT"), "TEXT", [captions])
    path = tmp_path / "part-00000.parquet"
    pq.write_table(table, path)
    banks = tmp_path / "banks"
    terms = tmp_path / "terms.txt"
    terms.write_text("zorblax\n", encoding="utf-8")  # a made-up stand-in keyword
    BankStore(banks).add("T", "term", terms)
    BankStore(banks).add("other", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    rule = "research=punsafe > 0.9 AND bank:T -> remove"
    scan(path, banks, tmp_path / "run", bank_names=("other",), policy={"triage": {"rules": [rule]}})
    rows = sorted(f["row"] for f in findings(tmp_path / "run"))
    assert rows == [i for i in range(91, 100) if i % 3 == 0]  # 93, 96, 99
