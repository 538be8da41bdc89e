"""Hotline report export: one record per confirmed (or already reported) case, hashes and URLs only.

Formats:
- `json`: `{"generated_at", "tool", "cases": [{case_id, state, keys: [...], urls: [...], md5, sha1, sha256,
  pdq, detection: ["detector/bank", ...], first_seen, verification_reference}]}`.
- `csv`: the same fields, one line per dataset key (a `key` column); `urls` and `detection` joined with ` | `.
- `ncmec`: XML in the shape of NCMEC's hash-sharing (v2) entries, the one NCMEC format whose field names are
  public (notes/detection.md §3): an `<image>` per case with `<id>`, `<timestamp>` (first seen), `<classification>`
  (left empty: grading is the hotline's), and `<fingerprints>` holding `<md5>`, `<sha1>`, `<pdq>`; then what a
  CyberTipline report asks of the reporter about where the content was found, in elements of our own naming:
  `<urls><url>`, `<datasetKeys><key>`, `<detection>`, `<verification service-reference=...>`. It is not validated
  against NCMEC's schema (not public); it is meant to be mapped into their reporting API, never sent as is.
No format holds captions or image bytes. Files are written 0600, atomically. Exporting changes no state unless
asked (`mark_reported`), which moves the exported confirmed cases to `reported`, logged.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safeset import __version__
from safeset.cases.model import CaseState, CaseView
from safeset.cases.store import CaseStore
from safeset.errors import SafesetError
from safeset.fsutil import atomic_path

FORMATS = ("ncmec", "csv", "json")
REPORTED_STATES = (CaseState.CONFIRMED, CaseState.REPORTED)
CSV_FIELDS = (
    "case_id",
    "key",
    "urls",
    "md5",
    "sha1",
    "sha256",
    "pdq",
    "detection",
    "first_seen",
    "verification_reference",
    "state",
)
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class ReportResult:
    cases: int
    records: int  # records written: cases (json, ncmec) or key lines (csv)
    marked_reported: int


def case_record(case: CaseView) -> dict[str, Any]:
    keys = list(dict.fromkeys(o.key for o in case.occurrences))
    urls = list(dict.fromkeys(o.url for o in case.occurrences if o.url))
    detection = list(dict.fromkeys(f"{e.detector}/{e.bank}" for e in case.evidence))
    return {
        "case_id": case.id,
        "state": case.state.value,
        "keys": keys,
        "urls": urls,
        "md5": case.md5,
        "sha1": case.sha1,
        "sha256": case.sha256,
        "pdq": case.pdq,
        "detection": detection,
        "first_seen": case.first_seen.astimezone(UTC).isoformat(),
        "verification_reference": case.reference,
    }


def export_report(store: CaseStore, fmt: str, out: Path, who: str, mark_reported: bool = False) -> ReportResult:
    if fmt not in FORMATS:
        raise SafesetError(f"report format {fmt!r}: choose from {', '.join(FORMATS)}")
    if out.exists() and out.is_dir():
        raise SafesetError(f"--out {out} is a folder; give a file name")
    cases = store.get_cases(store.case_ids(REPORTED_STATES))
    records = [case_record(c) for c in cases]
    if fmt == "json":
        text, count = _json(records), len(records)
    elif fmt == "csv":
        text, count = _csv(records)
    else:
        text, count = _ncmec(records), len(records)
    with atomic_path(out, private=True) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    marked = 0
    if mark_reported:
        confirmed = [c.id for c in cases if c.state is CaseState.CONFIRMED]
        store.transition(confirmed, CaseState.REPORTED, who, f"exported in the {fmt} report {out.name}")
        marked = len(confirmed)
    return ReportResult(len(cases), count, marked)


def _generated() -> str:
    return datetime.now(UTC).isoformat()


def _json(records: list[dict[str, Any]]) -> str:
    body = {"generated_at": _generated(), "tool": f"safeset {__version__}", "cases": records}
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def _csv(records: list[dict[str, Any]]) -> tuple[str, int]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for record in records:
        for key in record["keys"] or [""]:
            row = {name: record.get(name) for name in CSV_FIELDS if name in record}
            row.update(key=key, urls=" | ".join(record["urls"]), detection=" | ".join(record["detection"]))
            writer.writerow({k: _cell(v) for k, v in row.items() if k in CSV_FIELDS})
            count += 1
    return buffer.getvalue(), count


#: A cell starting with one of these is a formula to a spreadsheet; URLs and keys come from scraped data.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet opening the report shows as text, never evaluates (OWASP's CSV injection
    advice: prefix a quote)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _xml_text(value: object) -> str:
    """Text XML 1.0 can carry: control characters (possible in hostile URLs or keys) are written as \\xNN."""
    return _XML_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _ncmec(records: list[dict[str, Any]]) -> str:
    root = ET.Element("safesetReport", {"generated": _generated(), "tool": f"safeset {__version__}"})
    for record in records:
        image = ET.SubElement(root, "image")
        ET.SubElement(image, "id").text = f"case-{record['case_id']}"
        ET.SubElement(image, "timestamp").text = record["first_seen"]
        ET.SubElement(image, "classification")
        fingerprints = ET.SubElement(image, "fingerprints")
        for name in ("md5", "sha1", "pdq"):
            if record[name]:
                ET.SubElement(fingerprints, name).text = record[name]
        urls = ET.SubElement(image, "urls")
        for url in record["urls"]:
            ET.SubElement(urls, "url").text = _xml_text(url)
        keys = ET.SubElement(image, "datasetKeys")
        for key in record["keys"]:
            ET.SubElement(keys, "key").text = _xml_text(key)
        detection = ET.SubElement(image, "detection")
        for method in record["detection"]:
            ET.SubElement(detection, "method").text = _xml_text(method)
        verification = ET.SubElement(image, "verification", {"state": record["state"]})
        if record["verification_reference"]:
            verification.set("service-reference", _xml_text(record["verification_reference"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
