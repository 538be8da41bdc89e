"""Caption screening throughput: captions/s on one core, term matcher vs a `re` alternation and a per-row loop.

    python benchmarks/bench_terms.py [--rows 1000000] [--terms 10000] [--batch-rows 4096] [--baseline-rows 20000]
                                     [--compare-engines]
    python benchmarks/bench_terms.py --before-after [--before-rev HEAD] [--rows 300000] [--runs 3]
                                     [--recall-rows 20000]
    python benchmarks/bench_terms.py --stages [--rows 50000] [--runs 10]

`--before-after` (issue 13): real-looking multilingual captions (eight scripts, product-listing noise,
full-width punctuation, emoji, spaced syllables, invisible characters, Hangul particles), a 10 k-term bank in
the same scripts with all normalisation steps, and the matcher of `--before-rev` (its `src/` exported with
`git archive` into a temporary folder, its bank imported by its own code) against the working tree's, in
paired runs that alternate old and new; each figure is CPU time of the match calls in its own process. It
also prints recall per script on the first --recall-rows captions against the substring-plus-boundary
oracle of `tests/match/multilingual.py`. `--stages` times each stage of the working tree's matching on
the same kind of captions.

Writes synthetic LAION-like captions (benign made-up words in Latin, CJK, Cyrillic and Arabic script, caption
lengths log-normal around LAION's) to a parquet file, builds a 10 k-term bank (made-up words and phrases in
the same scripts) with all normalisation steps and with none, and times each configuration in its own
process (one core), reporting captions/s, peak resident memory, and ratios. The `re` alternation is far
slower, so it runs on the first --baseline-rows captions only; the per-row loop runs on all of them. The
baselines hold all captions as Python strings, which is most of their peak memory.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import random
import re
import resource
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Benign syllables per script, from which made-up words are drawn.
SYLLABLES = {
    "latin": [
        "ka",
        "lo",
        "mi",
        "ra",
        "te",
        "su",
        "no",
        "bi",
        "za",
        "qu",
        "fre",
        "plo",
        "dan",
        "wen",
        "tor",
        "vel",
        "ish",
        "ark",
        "mon",
        "lee",
        "sa",
        "di",
        "po",
        "gu",
    ],
    "cyrillic": [
        "ка",
        "ло",
        "ми",
        "ра",
        "те",
        "су",
        "но",
        "би",
        "за",
        "дре",
        "пло",
        "дан",
        "вен",
        "тор",
        "вел",
        "ош",
        "ар",
        "мон",
    ],
    "arabic": "كا لو مي را تي سو نو بي زا در بل دان ون تور".split(),  # noqa: SIM905
    "cjk": list("的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"),
}
# Terms carry one syllable the captions never use, so they are as rare in captions as real list terms
# (about 1 % of captions get one planted); without it, short CJK terms would hit a third of CJK captions.
TERM_MARK = {"latin": "zx", "cyrillic": "жщ", "arabic": "ظغ", "cjk": "龘"}
# Share of captions per script, roughly LAION-5B's: English/Latin-script majority, then the rest.
SCRIPT_SHARE = {"latin": 0.70, "cjk": 0.10, "cyrillic": 0.10, "arabic": 0.10}


def make_word(rng: random.Random, script: str) -> str:
    syllables = SYLLABLES[script]
    count = rng.randint(1, 2) if script == "cjk" else rng.randint(1, 4)
    return "".join(rng.choice(syllables) for _ in range(count))


def make_captions(n: int, terms: list[str], seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    vocab = {s: [make_word(rng, s) for _ in range(5000)] for s in SYLLABLES}
    scripts, weights = list(SCRIPT_SHARE), list(SCRIPT_SHARE.values())
    # LAION caption lengths: log-normal, median about 45 characters, long tail clipped at 300.
    lengths = np.clip(np.random.default_rng(seed).lognormal(np.log(45), 0.6, n), 3, 300).astype(int)
    captions = []
    for target in lengths.tolist():
        script = rng.choices(scripts, weights)[0]
        words: list[str] = []
        size = 0
        while size < target:
            word = rng.choice(vocab[script])
            if script == "latin" and rng.random() < 0.1:
                word = word.capitalize()
            words.append(word)
            size += len(word) + (script != "cjk")
        if rng.random() < 0.01:  # about 1 % of captions carry a stand-in term
            words.insert(rng.randrange(len(words) + 1), rng.choice(terms))
        captions.append(("" if script == "cjk" else " ").join(words))
    return captions


def make_terms(n: int, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    terms: set[str] = set()
    scripts, weights = list(SCRIPT_SHARE), list(SCRIPT_SHARE.values())
    while len(terms) < n:
        script = rng.choices(scripts, weights)[0]
        # Longer than the caption vocabulary's words, so that terms are rare, as real list terms are.
        term = make_word(rng, script) + TERM_MARK[script] + make_word(rng, script)
        if rng.random() < 0.1 and script != "cjk":
            term += " " + make_word(rng, script)
        terms.add(term)
    return sorted(terms)


# --before-after: captions shaped like LAION-multi rows. Shares of scripts roughly as in LAION2B-multi
# (Latin-script European languages first, then Cyrillic, Chinese, Japanese, Korean, Arabic, Thai, Greek).
MULTI_SHARE = {
    "latin": 0.42,
    "cyrillic": 0.14,
    "han": 0.11,
    "kana": 0.09,
    "hangul": 0.08,
    "arabic": 0.06,
    "thai": 0.05,
    "greek": 0.05,
}
MULTI_SYLLABLES = {
    **SYLLABLES,
    "han": SYLLABLES["cjk"],
    "kana": list("かきくけこさしすせそたちつてとなにぬねのカキクケコサシスセソタチツテト"),
    "hangul": list("가나다라마바사아자차카타파하거너더러머버서어저처"),
    "thai": list("กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอ"),
    "greek": ["κα", "λο", "μι", "ρα", "τε", "συ", "νο", "βι", "ζα", "δρε", "πλο", "δαν", "βεν", "τορ"],
}
MULTI_MARK = {**TERM_MARK, "han": TERM_MARK["cjk"], "kana": "ヰヱ", "hangul": "뷁", "thai": "ฮฬ", "greek": "ψξ"}
NOISE = {
    "latin": [" - Size M", " | Free Shipping", " (2019)", " 1920x1080", " ★★★★☆", " #sale", " & more", " 100% Cotton"],
    "cyrillic": [" - Размер M", " | Бесплатная доставка", " (2019)", " 100%"],
    "han": ["（新款）", "，包邮", "【正品】", " 2019年", "！"],
    "kana": ["【送料無料】", "（新品）", "！", " 2019年"],
    "hangul": [" [무료배송]", " (신상)", " 2019년", "!!"],
    "arabic": [" - مقاس M", " | شحن مجاني", " (2019)"],
    "thai": [" ลดราคา!", " (ใหม่)", " 2019"],
    "greek": [" - Μέγεθος M", " (2019)"],
}


def make_multilingual_terms(n: int, seed: int = 2) -> list[str]:
    from tests.match import multilingual

    rng = random.Random(seed)
    terms: set[str] = set(multilingual.all_terms())
    scripts, weights = list(MULTI_SHARE), list(MULTI_SHARE.values())
    while len(terms) < n:
        script = rng.choices(scripts, weights)[0]
        syllables = MULTI_SYLLABLES[script]
        pieces = [rng.choice(syllables) for _ in range(rng.randint(1, 2))]
        term = "".join(pieces) + MULTI_MARK[script] + rng.choice(syllables)
        if rng.random() < 0.1 and script in ("latin", "cyrillic", "greek", "hangul"):
            term += rng.choice([" ", "-"]) + "".join(rng.choice(syllables) for _ in range(2))
        terms.add(term)
    return sorted(terms)


def make_multilingual_captions(n: int, terms: list[str], seed: int = 1) -> tuple[list[str], list[str]]:
    """Captions and the script of each: LAION-multi-like lengths (log-normal, median about 50 characters)."""
    from tests.match import multilingual

    rng = random.Random(seed)
    by_script: dict[str, list[str]] = {s: [] for s in MULTI_SHARE}
    for term in terms:
        script = next((s for s, mark in MULTI_MARK.items() if mark in term and s in MULTI_SHARE), None)
        by_script[script or _script_of(term, multilingual)].append(term)
    vocab = {
        s: multilingual.VOCABULARY[s] + ["".join(rng.choice(MULTI_SYLLABLES[s]) for _ in range(2)) for _ in range(300)]
        for s in MULTI_SHARE
    }
    scripts, weights = list(MULTI_SHARE), list(MULTI_SHARE.values())
    lengths = np.clip(np.random.default_rng(seed).lognormal(np.log(50), 0.6, n), 5, 400).astype(int)
    captions, row_scripts = [], []
    for target in lengths.tolist():
        script = rng.choices(scripts, weights)[0]
        unspaced = script in multilingual.UNSPACED and rng.random() < 0.8
        words: list[str] = []
        size = 0
        while size < target:
            word = rng.choice(vocab[script])
            if script in ("latin", "cyrillic", "greek") and rng.random() < 0.15:
                word = word.capitalize()
            words.append(word)
            size += len(word) + (not unspaced)
        if rng.random() < 0.01 and by_script[script]:  # about 1 % of captions carry a stand-in term, disguised
            spelled, _ = multilingual.spell(rng.choice(by_script[script]), script, rng)
            words.insert(rng.randrange(len(words) + 1), spelled)
        caption = ("" if unspaced else " ").join(words)
        if rng.random() < 0.3:
            caption += rng.choice(NOISE[script])
        if rng.random() < 0.05:
            caption += rng.choice([" 🙂", " ❤️", " 👍🏽", "​"])
        captions.append(caption)
        row_scripts.append(script)
    return captions, row_scripts


def _script_of(term: str, multilingual: Any) -> str:
    return next(s for s, ts in multilingual.TERMS.items() if term in ts)


#: Rows that take every path of the normaliser once (one needs Python's NFKC: `e` and a combining accent), so
#: that loading compiled kernels falls into the setup time, not into the first batch timed.
WARM_UP = ["warm-up", "e\u0301"]


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_matcher(parquet: str, banks: str, bank: str, batch_rows: int, engine: str | None = None) -> dict[str, Any]:
    """The scan's own path: Arrow caption batches -> Signals -> TermMatcher.match."""
    import safeset.kinds.terms.matcher as terms_module
    from safeset.banks.store import BankStore
    from safeset.io.batch import RowBatch
    from safeset.kinds.base import MATCHERS
    from safeset.signals.compute import Signals

    terms_module.ENGINE = engine  # None: the fastest engine installed
    store = BankStore(Path(banks))
    info = store.info(bank)
    started = time.perf_counter()
    matcher = MATCHERS[info.kind](info, store.folder(info.name))
    # Build the normaliser's lookup tables (once per process, ~1 s) before timing, not in the first batch.
    matcher.normalizer.normalize_strings(WARM_UP)
    setup = time.perf_counter() - started
    rss_ready = current_rss_mib()
    seconds, rows, flagged = 0.0, 0, 0
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=batch_rows, columns=["TEXT"]):
        rows_batch = RowBatch("bench", np.arange(rows, rows + batch.num_rows), None, captions=batch.column(0))
        t0 = time.perf_counter()
        hits = matcher.match(Signals(rows_batch, []))
        seconds += time.perf_counter() - t0
        flagged += sum(len(h.positions) for h in hits)
        rows += batch.num_rows
    used = getattr(getattr(matcher, "automaton", None), "engine", "pyahocorasick")
    return {
        "rows": rows,
        "seconds": seconds,
        "flagged": flagged,
        "setup_s": setup,
        "rss_ready": rss_ready,
        "engine": used,
    }


def run_versioned(src: str, parquet: str, terms_file: str, workdir: str, batch_rows: int, recall_rows: int) -> dict:
    """One version of the code (its `src/` first on the path), its own bank import, then the scan's own path;
    CPU time of the match calls only (the machine's two cores are shared, so wall time is noisier)."""
    import sys

    sys.path.insert(0, src)
    import safeset
    from safeset.banks.store import BankStore
    from safeset.io.batch import RowBatch
    from safeset.kinds.base import MATCHERS
    from safeset.signals.compute import Signals

    assert Path(safeset.__file__).is_relative_to(src), safeset.__file__
    store = BankStore(Path(workdir))
    info = store.add("t", "term", Path(terms_file))
    started = time.perf_counter()
    matcher = MATCHERS[info.kind](info, store.folder(info.name))
    matcher.normalizer.normalize_strings(WARM_UP)
    setup = time.perf_counter() - started
    cpu, wall, rows, flagged = 0.0, 0.0, 0, 0
    flagged_rows: list[int] = []
    evidence = hashlib.sha256()  # every flagged row and its evidence, to check old and new agree exactly
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=batch_rows, columns=["TEXT"]):
        rows_batch = RowBatch("bench", np.arange(rows, rows + batch.num_rows), None, captions=batch.column(0))
        c0, t0 = time.process_time(), time.perf_counter()
        hits = matcher.match(Signals(rows_batch, []))
        cpu += time.process_time() - c0
        wall += time.perf_counter() - t0
        for h in hits:
            flagged += len(h.positions)
            flagged_rows.extend(p + rows for p in h.positions.tolist() if p + rows < recall_rows)
            for position, said in zip(h.positions.tolist(), h.evidence, strict=True):
                evidence.update(f"{position + rows}\t{h.detector}\t{said}\n".encode())
        rows += batch.num_rows
    engine = getattr(getattr(matcher, "automaton", None), "engine", "pyahocorasick")
    return {
        "rows": rows,
        "cpu": cpu,
        "wall": wall,
        "flagged": flagged,
        "flagged_rows": flagged_rows,
        "evidence": evidence.hexdigest(),
        "setup_s": setup,
        "engine": engine,
    }


def oracle_rows(captions: list[str], terms: list[str]) -> set[int]:
    """Rows the substring-plus-boundary oracle flags (new normaliser on both sides; every occurrence checked)."""
    import ahocorasick

    from safeset.signals.text import TextNormalizer
    from tests.match import multilingual

    normalizer = TextNormalizer()
    automaton = ahocorasick.Automaton()
    for pattern in normalizer.normalize_strings(terms):
        for spelling in multilingual.joined_spellings(pattern):
            automaton.add_word(spelling, spelling)
    automaton.make_automaton()
    found = set()
    for i, text in enumerate(normalizer.normalize_strings(captions)):
        for end, spelling in automaton.iter(text):
            start = end - len(spelling) + 1
            before = text[start - 1] if start else None
            after = text[end + 1] if end + 1 < len(text) else None
            if multilingual.boundary_ok(before, spelling[0], spelling[-1], after):
                found.add(i)
                break
    return found


def before_after(args: argparse.Namespace) -> None:
    """Old code (--before-rev) against the working tree, paired and interleaved, on multilingual captions."""
    import subprocess
    import sys
    from statistics import median

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    print(f"machine: nproc={os.cpu_count()}, {cpu_model()}; Python {platform.python_version()}; {versions()}")
    with tempfile.TemporaryDirectory(prefix="bench-terms-ba-") as tmp:
        root = Path(tmp)
        before_src = root / "before"
        before_src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", args.before_rev, "src"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(before_src)], input=archive.stdout, check=True)
        revision = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", args.before_rev],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        t0 = time.perf_counter()
        terms = make_multilingual_terms(args.terms)
        captions, scripts = make_multilingual_captions(args.rows, terms)
        parquet = root / "captions.parquet"
        pq.write_table(pa.table({"TEXT": captions}), parquet)
        terms_file = root / "terms.txt"
        terms_file.write_text("\n".join(terms) + "\n", encoding="utf-8")
        chars = sum(len(c) for c in captions)
        non_ascii = sum(1 for c in captions if not c.isascii()) / len(captions)
        print(
            f"data: {args.rows:,} multilingual captions (mean {chars / args.rows:.0f} chars,"
            f" {non_ascii:.0%} non-ASCII), {len(terms):,} terms, generated in {time.perf_counter() - t0:.1f} s;"
            f" batches of {args.batch_rows} rows"
        )
        versions_src = {f"before ({revision})": str(before_src / "src"), "after (working tree)": str(repo / "src")}
        results: dict[str, list[dict[str, Any]]] = {label: [] for label in versions_src}
        for run in range(args.runs):
            order = list(versions_src) if run % 2 == 0 else list(versions_src)[::-1]
            for label in order:
                work = root / f"banks-{run}-{label.split()[0]}"
                results[label].append(
                    in_own_process(
                        "run_versioned",
                        versions_src[label],
                        str(parquet),
                        str(terms_file),
                        str(work),
                        args.batch_rows,
                        args.recall_rows,
                    )
                )
        recall_captions = captions[: args.recall_rows]
        expected = oracle_rows(recall_captions, terms)
    print(
        f"\n{'code':<24} {'captions':>10} {'CPU s (median)':>15} {'captions/s/core: min':>21} {'median':>9} {'max':>9}"
        f" {'flagged':>8}  engine, setup"
    )
    rates: dict[str, list[float]] = {}
    for label, runs in results.items():
        rates[label] = [r["rows"] / r["cpu"] for r in runs]
        rate = sorted(rates[label])
        print(
            f"{label:<24} {runs[0]['rows']:>10,} {median(r['cpu'] for r in runs):>15.2f} {rate[0]:>21,.0f}"
            f" {median(rate):>9,.0f} {rate[-1]:>9,.0f} {runs[0]['flagged']:>8,}  {runs[0]['engine']},"
            f" {median(r['setup_s'] for r in runs):.1f} s"
        )
    digests = {r["evidence"] for runs in results.values() for r in runs}
    if len(digests) != 1:
        raise SystemExit("old and new code flag different rows or give different evidence: not comparable")
    print(f"results: identical in every run (same {results[label][0]['flagged']:,} rows flagged, same evidence)")
    before_label, after_label = list(versions_src)
    ratios = sorted(a / b for a, b in zip(rates[after_label], rates[before_label], strict=True))
    print(f"after / before, paired per run: {', '.join(f'{r:.2f}x' for r in ratios)}")
    print(f"\nrecall per script on the first {len(recall_captions):,} captions (oracle: {len(expected):,} rows)")
    print(
        f"{'script':<10} {'oracle rows':>11} "
        + " ".join(f"{label.split()[0] + ' found':>13} {'extra':>6}" for label in versions_src)
    )
    found = {label: set(results[label][0]["flagged_rows"]) for label in versions_src}
    for script in [*MULTI_SHARE, "all"]:
        rows = {i for i in expected if script == "all" or scripts[i] == script}
        cells = []
        for label in versions_src:
            extra = {i for i in found[label] - expected if script == "all" or scripts[i] == script}
            hit = len(rows & found[label])
            cells.append(f"{hit:>6} ({hit / max(len(rows), 1):>4.0%}) {len(extra):>6}")
        print(f"{script:<10} {len(rows):>11} " + " ".join(cells))


def stages(args: argparse.Namespace) -> None:
    """Where the working tree's caption matching spends its time, stage by stage, on the --before-after captions:
    CPU time per caption of each stage run on its own over the same batches, the least of --runs rounds (the
    cores are shared, and interference only ever adds time)."""
    import sys
    import unicodedata

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    import safeset.signals.text as text_module
    from safeset.banks.store import BankStore
    from safeset.io.batch import RowBatch
    from safeset.kinds.base import MATCHERS
    from safeset.kinds.terms import matcher as terms_matcher
    from safeset.signals.compute import Signals

    terms = make_multilingual_terms(args.terms)
    captions, _ = make_multilingual_captions(args.rows, terms)
    column = pa.array(captions, type=pa.string())
    batches = [column.slice(i, args.batch_rows) for i in range(0, len(column), args.batch_rows)]
    with tempfile.TemporaryDirectory(prefix="bench-terms-stages-") as tmp:
        terms_file = Path(tmp) / "terms.txt"
        terms_file.write_text("\n".join(terms) + "\n", encoding="utf-8")
        store = BankStore(Path(tmp) / "banks")
        info = store.add("t", "term", terms_file)
        matcher = MATCHERS[info.kind](info, store.folder(info.name))
    normalizer = matcher.normalizer
    normalizer.normalize_strings(WARM_UP)
    steps = set(normalizer.steps)
    tables = text_module.kernel_tables(frozenset(steps))
    mapping = tables.mapping
    shared = (tables.props, mapping.single, mapping.length, mapping.flat_start, mapping.flat, tables.longest_image)
    flags = ("leetspeak" in steps, "separators" in steps, "spacing" in steps, "repeats" in steps)
    raws = [text_module._raw_rows(b) for b in batches]

    def first_call(i: int) -> tuple[Any, ...]:
        raw = raws[i]
        return text_module._k_normalize_rows(
            raw.bytes_array, raw.byte_starts, raw.byte_ends, *shared, text_module._LEET_TARGET, True, *flags
        )

    def python_nfkc(hard_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        text = unicodedata.normalize("NFKC", hard_codes.tobytes().decode("utf-32-le"))
        encoded = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        nul = np.flatnonzero(encoded == 0)
        first = np.zeros(len(nul), dtype=np.int64)
        first[1:] = nul[:-1] + 1
        return encoded, first, nul

    firsts = [first_call(i) for i in range(len(batches))]
    nfkcs = [python_nfkc(f[3]) for f in firsts]
    seconds = [text_module._k_normalize_rows(*n, *shared, text_module._LEET_TARGET, False, *flags) for n in nfkcs]
    texts = [normalizer.normalize_array(b) for b in batches]
    found = [matcher.automaton.find(t.data) for t in texts]

    def after_scan(i: int) -> None:
        text, (patterns, ends) = texts[i], found[i]
        starts = ends - matcher.lengths[patterns]
        rows = np.searchsorted(text.byte_starts, starts, side="right") - 1
        keep = (ends <= text.byte_ends[rows]) & terms_matcher._on_word_boundaries(text, rows, starts, ends)
        matcher._plain(rows[keep], patterns[keep])

    def whole_match(i: int) -> None:
        batch = RowBatch("bench", np.arange(len(batches[i])), None, captions=batches[i])
        matcher.match(Signals(batch, []))

    measured = {
        "normalise: fused kernel, first call": first_call,
        "normalise: Python NFKC of the rows that need it": lambda i: python_nfkc(firsts[i][3]),
        "normalise: kernel again on those rows": lambda i: text_module._k_normalize_rows(
            *nfkcs[i], *shared, text_module._LEET_TARGET, False, *flags
        ),
        "normalise: splice them in": lambda i: text_module._k_splice_rows(
            firsts[i][0], firsts[i][1], seconds[i][0], seconds[i][1], firsts[i][2]
        ),
        "normalise: whole (normalize_array)": lambda i: normalizer.normalize_array(batches[i]),
        "hyperscan scan": lambda i: matcher.automaton.find(texts[i].data),
        "rows, boundaries, evidence": after_scan,
        "match() as the scan calls it": whole_match,
    }
    # The fused kernel with the steps added one at a time (the steps are always applied in the order of STEPS).
    cumulative: list[str] = ["nfkc", "invisible", "casefold", "accents", "confusables"]
    for added in (None, "leetspeak", "separators", "spacing", "repeats"):
        if added:
            cumulative.append(added)
        chosen = frozenset(cumulative)
        some = text_module.kernel_tables(chosen)
        some_shared = (
            some.props,
            some.mapping.single,
            some.mapping.length,
            some.mapping.flat_start,
            some.mapping.flat,
            some.longest_image,
        )
        some_flags = tuple(step in chosen for step in ("leetspeak", "separators", "spacing", "repeats"))

        def partial_kernel(i: int, tables: tuple[Any, ...] = some_shared, on: tuple[bool, ...] = some_flags) -> None:
            raw = raws[i]
            text_module._k_normalize_rows(
                raw.bytes_array, raw.byte_starts, raw.byte_ends, *tables, text_module._LEET_TARGET, True, *on
            )

        label = "decode, per-character map, encode" if added is None else f"  + {added}"
        measured[f"kernel: {label}"] = partial_kernel
    best = dict.fromkeys(measured, float("inf"))
    for _ in range(args.runs):
        for name, stage in measured.items():
            started = time.process_time()
            for i in range(len(batches)):
                stage(i)
            best[name] = min(best[name], time.process_time() - started)
    hard = sum(len(f[2]) for f in firsts) / len(captions)
    print(f"machine: nproc={os.cpu_count()}, {cpu_model()}; Python {platform.python_version()}; {versions()}")
    print(
        f"{len(captions):,} multilingual captions, {len(terms):,} terms, batches of {args.batch_rows};"
        f" {hard:.1%} of rows need Python's NFKC; least of {args.runs} rounds"
    )
    whole = best["match() as the scan calls it"]
    for name, seconds_taken in best.items():
        per_row = seconds_taken / len(captions) * 1e9
        print(f"{name:<50} {per_row:>7.0f} ns/caption {seconds_taken / whole:>6.0%}")
    print(f"match(): {len(captions) / whole:,.0f} captions/s on one core")


def run_re_alternation(parquet: str, terms_file: str, limit: int) -> dict[str, Any]:
    """Baseline: one compiled alternation of every term with word boundaries, `search` per caption."""
    terms = Path(terms_file).read_text(encoding="utf-8").split("\n")
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(filter(None, terms), key=len)[::-1]) + r")\b")
    captions = pq.read_table(parquet, columns=["TEXT"]).column(0).to_pylist()[:limit]
    rss_ready = current_rss_mib()
    t0 = time.perf_counter()
    flagged = sum(1 for c in captions if c and pattern.search(c))
    return {"rows": len(captions), "seconds": time.perf_counter() - t0, "flagged": flagged, "rss_ready": rss_ready}


def run_row_loop(parquet: str, terms_file: str, limit: int) -> dict[str, Any]:
    """Baseline: a pyahocorasick automaton of the raw terms, called from a Python loop once per caption."""
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for i, term in enumerate(t for t in Path(terms_file).read_text(encoding="utf-8").split("\n") if t):
        automaton.add_word(term, i)
    automaton.make_automaton()
    captions = pq.read_table(parquet, columns=["TEXT"]).column(0).to_pylist()[:limit]
    rss_ready = current_rss_mib()
    t0 = time.perf_counter()
    flagged = 0
    for caption in captions:
        if caption:
            for _ in automaton.iter(caption):
                flagged += 1
                break
    return {"rows": len(captions), "seconds": time.perf_counter() - t0, "flagged": flagged, "rss_ready": rss_ready}


def _child(target: str, args: tuple[Any, ...], queue: Any) -> None:
    result = globals()[target](*args)
    result["peak_rss"] = peak_rss_mib()
    queue.put(result)


def in_own_process(target: str, *args: Any) -> dict[str, Any]:
    """Each configuration in a fresh process, so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def versions() -> str:
    found = []
    for name in ("pyarrow", "numpy", "pyahocorasick", "hyperscan"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--terms", type=int, default=10_000)
    parser.add_argument("--batch-rows", type=int, default=4096, help="rows per batch, as `safeset scan` reads them")
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument(
        "--compare-engines", action="store_true", help="also run the batched path on pyahocorasick (two more runs)"
    )
    parser.add_argument("--before-after", action="store_true", help="old code against the working tree (issue 13)")
    parser.add_argument("--before-rev", default="HEAD", help="git revision of the old code (default HEAD)")
    parser.add_argument("--runs", type=int, default=3, help="paired runs for --before-after")
    parser.add_argument("--recall-rows", type=int, default=20_000, help="captions checked against the oracle")
    parser.add_argument(
        "--stages", action="store_true", help="time each stage of the working tree's matching (--rows, --runs)"
    )
    args = parser.parse_args()
    if args.stages:
        stages(args)
        return
    if args.before_after:
        before_after(args)
        return

    from safeset.banks.store import BankStore

    print(f"machine: nproc={os.cpu_count()}, {cpu_model()}; Python {platform.python_version()}; {versions()}")
    with tempfile.TemporaryDirectory(prefix="bench-terms-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        terms = make_terms(args.terms)
        captions = make_captions(args.rows, terms)
        parquet = root / "captions.parquet"
        pq.write_table(pa.table({"TEXT": captions}), parquet)
        chars = sum(len(c) for c in captions)
        terms_file = root / "terms.txt"
        terms_file.write_text("\n".join(terms) + "\n", encoding="utf-8")
        print(
            f"data: {args.rows:,} captions (mean {chars / args.rows:.0f} chars), {len(terms):,} terms,"
            f" generated in {time.perf_counter() - t0:.1f} s; batches of {args.batch_rows} rows"
        )
        del captions
        banks = root / "banks"
        store = BankStore(banks)
        for name, steps in (("norm-all", None), ("norm-off", ())):
            t0 = time.perf_counter()
            store.add(name, "term", terms_file, options={"normalize": steps})
            print(f"bank {name}: imported {len(terms):,} terms in {time.perf_counter() - t0:.2f} s")

        results = {
            "batched, all normalisation": in_own_process(
                "run_matcher", str(parquet), str(banks), "norm-all", args.batch_rows
            ),
            "batched, normalisation off": in_own_process(
                "run_matcher", str(parquet), str(banks), "norm-off", args.batch_rows
            ),
        }
        if args.compare_engines:  # the same batched path on pyahocorasick, where hyperscan is the default
            for label, bank in (("all normalisation", "norm-all"), ("normalisation off", "norm-off")):
                results[f"batched, {label}, pyahocorasick"] = in_own_process(
                    "run_matcher", str(parquet), str(banks), bank, args.batch_rows, "pyahocorasick"
                )
        results["baseline: re alternation, per caption"] = in_own_process(
            "run_re_alternation", str(parquet), str(terms_file), args.baseline_rows
        )
        results["baseline: per-row loop, pyahocorasick"] = in_own_process(
            "run_row_loop", str(parquet), str(terms_file), args.rows
        )
    reference = results["batched, normalisation off"]
    ref_rate = reference["rows"] / reference["seconds"]
    print(
        f"\n{'configuration':<48} {'captions':>10} {'seconds':>8} {'captions/s':>12} {'vs off':>9} "
        f"{'flagged':>8} {'peak RSS':>9} {'RSS ready':>9}  engine, setup"
    )
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        print(
            f"{name:<48} {r['rows']:>10,} {r['seconds']:>8.2f} {rate:>12,.0f} {rate / ref_rate:>8.3f}x "
            f"{r['flagged']:>8,} {r['peak_rss']:>7.0f}Mi {r['rss_ready']:>7.0f}Mi"
            + (f"  {r['engine']}, {r['setup_s']:.1f} s" if "engine" in r else "")
        )


if __name__ == "__main__":
    main()
