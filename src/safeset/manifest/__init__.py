"""Removal manifests: withheld rows listed by every key a copy may keep, decoys matched to the true removals so the
list is no roadmap, an adversary that measures how well it hides them, and `apply` for any copy."""

from safeset.manifest.apply import ApplyReport, apply_to_copy, apply_to_hf_dataset, apply_to_table
from safeset.manifest.format import Manifest, generate_keypair, read_manifest, write_manifest

__all__ = [
    "ApplyReport",
    "Manifest",
    "apply_to_copy",
    "apply_to_hf_dataset",
    "apply_to_table",
    "generate_keypair",
    "read_manifest",
    "write_manifest",
]
