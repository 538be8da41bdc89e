"""Per-batch signal cache: each signal is computed once, on first request, and only if a matcher asks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from safeset.io.batch import RowBatch
from safeset.signals import pdq
from safeset.signals.digests import DIGEST_SIZES, hash_blobs, hex_to_digests
from safeset.signals.images import DEFAULT_MAX_PIXELS, image_problem
from safeset.signals.text import NormalizedText, TextNormalizer
from safeset.signals.url_kernels import FormBytes, UrlForms, digest_spans, spans_equal
from safeset.signals.urls import NORMALIZERS, hosts_array, url_forms


class Signals:
    def __init__(
        self,
        batch: RowBatch,
        image_digests: list[str],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        pdq_mode: str = pdq.DEFAULT_MODE,
    ) -> None:
        self.batch = batch
        self.max_pixels = max_pixels
        self.pdq_mode = pdq_mode
        self._image_algorithms = image_digests
        self._cache: dict[str, object] = {}

    def _memo(self, key: str, compute):  # type: ignore[no-untyped-def]
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def image_digest(self, algorithm: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Digest of the image bytes; all algorithms any bank needs are computed in one pass."""
        if self.batch.images is None:
            return None
        algorithms = sorted(set(self._image_algorithms) | {algorithm})
        table = self._memo("image_digests", lambda: hash_blobs(self.batch.images, algorithms))
        return table[algorithm]  # type: ignore[index]

    def metadata_digest(self, algorithm: str) -> tuple[np.ndarray, np.ndarray] | None:
        column = self.batch.metadata_hashes.get(algorithm)
        if column is None:
            return None
        return self._memo(f"meta:{algorithm}", lambda: hex_to_digests(column, DIGEST_SIZES[algorithm]))  # type: ignore[return-value]

    def url_forms(self) -> UrlForms | None:
        """Both normal forms of the URLs, computed in one compiled pass per batch and shared by the url,
        url-md5 and url-prefix matchers."""
        if self.batch.urls is None:
            return None
        return self._memo("url_forms", lambda: url_forms(self.batch.urls))  # type: ignore[return-value]

    def url_form_bytes(self, normalizer: str) -> FormBytes | None:
        """The URLs in this normal form as spans of one byte buffer (lookups and MD5 read it directly; no Arrow
        array is built for them)."""
        forms = self.url_forms()
        if forms is None:
            return None
        if normalizer in ("te", "canonical"):
            return forms.form(normalizer)
        return self._memo(f"url_bytes:{normalizer}", lambda: NORMALIZERS[normalizer].normalize_bytes(self.batch.urls))  # type: ignore[return-value]

    def url_form(self, normalizer: str) -> pa.Array | None:
        forms = self.url_form_bytes(normalizer)
        if forms is None:
            return None
        return self._memo(f"url:{normalizer}", forms.to_arrow)  # type: ignore[return-value]

    def url_digest(self, algorithm: str = "md5", normalizer: str = "te") -> tuple[np.ndarray, np.ndarray] | None:
        """Digest of the URL in a normal form (MD5 of the `te` form is ThreatExchange's `HASH_URL_MD5`); the url
        banks look their entries up by the MD5 too.

        MD5 is one compiled pass over the form's bytes; rows whose form equals one already hashed take that
        digest unhashed.
        """
        forms = self.url_form_bytes(normalizer)
        if forms is None:
            return None

        def compute() -> tuple[np.ndarray, np.ndarray]:
            for other in NORMALIZERS:
                known = self._cache.get(f"url_digest:{algorithm}:{other}")
                if other != normalizer and isinstance(known, tuple):
                    same = self.url_forms_equal(normalizer, other)
                    return digest_spans(forms.data, forms.starts, forms.ends, forms.valid, algorithm, (same, known[0]))
            return digest_spans(forms.data, forms.starts, forms.ends, forms.valid, algorithm)

        return self._memo(f"url_digest:{algorithm}:{normalizer}", compute)  # type: ignore[return-value]

    def url_forms_equal(self, first: str, second: str) -> np.ndarray | None:
        """Rows whose URL is byte-identical in both normal forms (most URLs: lower case, nothing to escape)."""
        if {first, second} == {"te", "canonical"}:
            forms = self.url_forms()
            return None if forms is None else forms.same  # found by the kernel that wrote both
        a, b = self.url_form_bytes(first), self.url_form_bytes(second)
        if a is None or b is None:
            return None
        key = "url_equal:" + ":".join(sorted((first, second)))
        return self._memo(key, lambda: spans_equal(a, b))  # type: ignore[return-value]

    def captions(self, normalizer: TextNormalizer) -> NormalizedText | None:
        """Captions normalised with these steps; banks built with the same steps share one computation."""
        if self.batch.captions is None:
            return None
        key = "captions:" + ",".join(normalizer.steps)
        return self._memo(key, lambda: normalizer.normalize_array(self.batch.captions))  # type: ignore[return-value]

    def hosts(self) -> pa.Array | None:
        if self.batch.urls is None:
            return None
        return self._memo("hosts", lambda: hosts_array(self.batch.urls))  # type: ignore[return-value]

    def embeddings32(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The batch's embeddings as float32 (rows × d) with their validity mask, if the batch carries any."""
        batch = self.batch
        if batch.embeddings is None:
            return None

        def compute() -> tuple[np.ndarray, np.ndarray]:
            valid = batch.embedding_valid if batch.embedding_valid is not None else np.ones(len(batch), dtype=bool)
            return np.asarray(batch.embeddings, dtype=np.float32), valid

        return self._memo("embeddings32", compute)  # type: ignore[return-value]

    def unit_embeddings(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Embeddings scaled to unit length (float64, for cosines); rows that are zero or not finite are invalid."""
        pair = self.embeddings32()
        if pair is None:
            return None

        def compute() -> tuple[np.ndarray, np.ndarray]:
            vectors, valid = pair
            wide = vectors.astype(np.float64)
            norms = np.sqrt((wide * wide).sum(axis=1))
            usable = valid & np.isfinite(norms) & (norms > 0)
            unit = np.zeros_like(wide)
            unit[usable] = wide[usable] / norms[usable, None]
            return unit, usable

        return self._memo("unit_embeddings", compute)  # type: ignore[return-value]

    def image_errors(self) -> list[str | None]:
        """Per-row reason the row could not be checked (read problems, undecodable images), else None."""

        def compute() -> list[str | None]:
            batch = self.batch
            errors = batch.read_errors.to_pylist() if batch.read_errors is not None else [None] * len(batch)
            if batch.images is not None:
                # A PDQ pass already decoded every image: its reasons are the check (one decode per image).
                decoded = self._cache.get("pdq")
                for i, blob in enumerate(batch.images.to_pylist()):
                    if blob is not None and errors[i] is None:
                        if isinstance(decoded, pdq.PdqHashes) and decoded.decoded is not None:
                            errors[i] = None if decoded.decoded[i] else decoded.errors[i]
                        else:
                            errors[i] = image_problem(blob, self.max_pixels)
            return errors

        return self._memo("image_errors", compute)  # type: ignore[return-value]

    def pdq(
        self,
        *,
        dihedral: bool = False,
        unletterbox: bool = False,
        reframes: tuple[pdq.Reframe, ...] = (),
        pixel_flips: bool = False,
    ) -> pdq.PdqHashes | None:
        """PDQ of each row's image, in the scan's `pdq_mode`; decoded once per batch for every user.

        A later call that needs more (dihedral variants, trimmed borders) than the cached result recomputes
        with the union of what was asked, so matchers and row signals share one decode in the common case.
        """
        if self.batch.images is None:
            return None
        cached = self._cache.get("pdq")
        if isinstance(cached, pdq.PdqHashes):
            has_dihedral, has_trim = cached.dihedral is not None, cached.trimmed is not None
            enough = (has_dihedral or not dihedral) and (has_trim or not unletterbox) and cached.has_reframes(reframes)
            if enough and (cached.pixel_flips or not (pixel_flips and dihedral)):
                return cached
            dihedral, unletterbox = dihedral or has_dihedral, unletterbox or has_trim
            pixel_flips = pixel_flips or cached.pixel_flips
            reframes = tuple(dict.fromkeys((*cached.reframes, *reframes)))
        result = pdq.hash_images(
            self.batch.images.to_pylist(),
            self.pdq_mode,
            dihedral=dihedral,
            unletterbox=unletterbox,
            reframes=reframes,
            pixel_flips=pixel_flips,
            max_pixels=self.max_pixels,
        )
        self._cache["pdq"] = result
        return result
