"""A classifier head applied to each row's embedding with onnxruntime: e.g. a user's ONNX export of LAION's
CLIP-based NSFW detector (768-d ViT-L/14 embedding in, one probability out). Rows whose score passes the
threshold go to review."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safeset.errors import InputError, SafesetError
from safeset.kinds.base import Hits
from safeset.policy.actions import Action
from safeset.signals.compute import Signals
from safeset.triage.base import Detector


class OnnxModelDetector(Detector):
    detector = "model"
    needs_embeddings = True

    def __init__(
        self, path: Path, threshold: float = 0.5, column: int | None = None, action: Action = Action.REVIEW
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise SafesetError("the model detector needs onnxruntime: pip install onnxruntime") from exc
        super().__init__(path.name, action)
        self.path = path
        self.threshold = threshold
        self.column = column
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for missing and malformed files
            raise InputError(f"cannot load ONNX model: {exc}", path) from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"the model has {len(inputs)} inputs; one (the embedding batch) is expected", path)
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.model_dim = shape[-1] if shape and isinstance(shape[-1], int) else None

    def prepare(self, dim: int) -> None:
        if dim and self.model_dim and dim != self.model_dim:
            raise InputError(f"the model takes {self.model_dim}-d inputs, the embeddings are {dim}-d", self.path)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """One score per row from the model's first output: (n,), (n, 1), or column `column` of (n, c)."""
        self.prepare(vectors.shape[1])
        output = np.asarray(self.session.run(None, {self.input_name: vectors.astype(np.float32)})[0])
        if output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1 and self.column in (None, 0)):
            return output.reshape(-1).astype(np.float64)
        if output.ndim == 2 and self.column is not None and 0 <= self.column < output.shape[1]:
            return output[:, self.column].astype(np.float64)
        raise InputError(
            f"the model's output has shape {output.shape}; choose its score column with --model-column", self.path
        )

    def detect(self, signals: Signals) -> list[Hits]:
        pair = signals.embeddings32()
        if pair is None:
            return []
        vectors, valid = pair
        rows = np.flatnonzero(valid)
        if not len(rows):
            return []
        scores = self.scores(vectors[rows])
        flagged = np.flatnonzero(scores > self.threshold)
        if not len(flagged):
            return []
        positions = rows[flagged].astype(np.int64)
        evidence = [f"{self.label} score {s:.4f} > {self.threshold:g}" for s in scores[flagged]]
        return [Hits(positions, evidence, self.detector)]
