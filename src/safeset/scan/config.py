"""What a scan is asked to do, and the fingerprint a resumed run must match."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safeset.banks.store import BankInfo
from safeset.fsutil import sha256_file
from safeset.io.base import DEFAULT_MAX_MEMBER_BYTES
from safeset.io.columns import ColumnOptions
from safeset.signals.images import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ScanConfig:
    dataset: str
    input_format: str
    banks_dir: str
    bank_names: tuple[str, ...]
    columns: ColumnOptions = field(default_factory=ColumnOptions)
    metadata_only: bool = False
    batch_rows: int = 4096
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    expanders: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # detector settings (thresholds, paths)

    def fingerprint(self, banks: list[BankInfo]) -> dict[str, Any]:
        """What must be equal for a resumed run to produce the same findings (files named by options included)."""
        files = {
            key: sha256_file(Path(value))
            for key, value in sorted(self.options.items())
            if key.endswith("_file") and value and Path(value).is_file()
        }
        fingerprint = {
            "dataset": str(Path(self.dataset).resolve()),
            "input_format": self.input_format,
            "columns": asdict(self.columns),
            "metadata_only": self.metadata_only,
            "max_pixels": self.max_pixels,
            "max_member_bytes": self.max_member_bytes,
            "banks": sorted(b.name + "=" + b.digest() for b in banks),
            "expanders": sorted(self.expanders),
            "options": {k: str(v) for k, v in sorted(self.options.items())},
            "option_files": files,
        }
        return json.loads(json.dumps(fingerprint))  # as run.json stores it: tuples become lists


