"""`make demo`: build a benign dataset, stand-in banks, then scan and clean it with the real CLI."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from safeset.demo import PHOTOS, demo_rows, write_webdataset

console = Console()


def run(*args: str) -> None:
    console.print(f"\n[bold cyan]$ safeset {' '.join(args)}[/]", highlight=False)
    subprocess.run([sys.executable, "-m", "safeset", *args], check=True)


def main(base: Path = Path("demo-output")) -> None:
    if base.exists():
        shutil.rmtree(base)
    dataset, banks, run_dir, release = base / "dataset", base / "banks", base / "run", base / "release"
    shards = demo_rows(shards=3, rows_per_shard=40)
    # One corrupt image, as real crawls have: the scan must report it as errored, not crash.
    shards[1][3].image = shards[1][3].image[: len(shards[1][3].image) // 3] if shards[1][3].image else None
    write_webdataset(dataset, shards)
    console.print(f"[bold]demo dataset[/]: {dataset} (img2dataset webdataset layout, 3 shards x 40 rows)")

    # Stand-in "known" lists: hashes of a few benign demo images, two URLs, one opted-out domain.
    lists = base / "lists"
    lists.mkdir(parents=True)
    known = [r for rows in shards for r in rows if r.image is not None][::23][:4]
    (lists / "known-md5.txt").write_text("".join(hashlib.md5(r.image).hexdigest() + "\n" for r in known))
    rows = [r for s in shards for r in s]
    (lists / "known-urls.txt").write_text(
        "# stand-in URL list; the first differs from the dataset only in case and scheme\n"
        + rows[10].url.replace("https://", "HTTP://").upper().replace("/ASTRONAUT", "/astronaut")
        + "\n"
        + rows[55].url
        + "\n"
    )
    (lists / "optout-domains.txt").write_text("optout.example.net\n")
    # A stand-in PDQ list: the perceptual hashes of two original photos. The dataset holds only re-encoded,
    # resized or mirrored copies of them, which no cryptographic hash can find.
    console.print("\n[bold cyan]$ safeset hash --mode exact photos/coffee.jpg photos/rocket.jpg[/]", highlight=False)
    hashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "safeset",
            "hash",
            "--mode",
            "exact",
            str(PHOTOS / "coffee.jpg"),
            str(PHOTOS / "rocket.jpg"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    console.print(hashed.rstrip(), highlight=False)
    pdq_lines = ["hash,quality"] + [",".join(line.split("\t")[2:4]) for line in hashed.splitlines() if line]
    (lists / "known-pdq.csv").write_text("\n".join(pdq_lines) + "\n")

    run("bank", "add", "--banks", str(banks), "--name", "demo-md5", "--kind", "md5", str(lists / "known-md5.txt"))
    run("bank", "add", "--banks", str(banks), "--name", "demo-urls", "--kind", "url", str(lists / "known-urls.txt"))
    run(
        "bank",
        "add",
        "--banks",
        str(banks),
        "--name",
        "demo-optout",
        "--kind",
        "exclude-domain",
        str(lists / "optout-domains.txt"),
    )
    run("bank", "add", "--banks", str(banks), "--name", "demo-pdq", "--kind", "pdq", str(lists / "known-pdq.csv"))
    run("bank", "list", "--banks", str(banks))
    run("scan", str(dataset), "--banks", str(banks), "--out", str(run_dir), "--expand", "duplicate")
    # A real release hides its removals among (1-p)/p matched decoys (default p = 0.01); 120 rows are too few for
    # that, so the demo asks for p = 0.8 (about one matched decoy per removal) and writes the manifest that
    # copy-holders apply.
    run("clean", str(dataset), str(run_dir), "--out", str(release), "--roadmap-bound", "0.8",
        "--manifest", str(release.parent / "manifest"))  # fmt: skip
    console.print(f"\n[bold green]demo done[/]: findings in {run_dir}/findings.parquet, release in {release}")


if __name__ == "__main__":
    main()
