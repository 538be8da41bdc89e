"""A Hugging Face datasets-loadable folder: the parquet shards as they are, plus a README.md dataset card whose YAML
`configs` points `datasets.load_dataset(folder)` at them. The card carries counts only, never the roadmap."""

from __future__ import annotations

from pathlib import Path

from safeset.errors import SafesetError

CARD_NAME = "README.md"


def write_hf_card(folder: Path, counts: dict[str, int], title: str = "cleaned dataset") -> Path:
    """Write README.md into a folder of parquet shards (a parquet release or cleaned copy)."""
    shards = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet") if "_safeset" not in p.parts)
    if any(folder.rglob("*.tar")):
        raise SafesetError(f"{folder}: --hf writes a card for parquet datasets; this one holds webdataset shards")
    if not shards:
        raise SafesetError(f"{folder}: --hf needs parquet shards (a parquet dataset); none found")
    if (folder / CARD_NAME).exists():
        raise SafesetError(f"{folder / CARD_NAME} exists; not overwritten")
    files = "\n".join(f"          - {name}" for name in shards)
    lines = "\n".join(f"- {name.replace('_', ' ')}: {value}" for name, value in sorted(counts.items()))
    card = (
        "---\n"
        "configs:\n"
        "  - config_name: default\n"
        "    data_files:\n"
        "      - split: train\n"
        "        path:\n"
        f"{files}\n"
        "---\n\n"
        f"# {title}\n\n"
        "Cleaned with safeset: rows matching lists of known abuse material, and rows withheld with them, were "
        "removed. Counts:\n\n"
        f"{lines}\n"
    )
    (folder / CARD_NAME).write_text(card, "utf-8")
    return folder / CARD_NAME
