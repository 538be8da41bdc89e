"""Review without viewing: a token-guarded page on 127.0.0.1 over the case store (see `server`)."""

from __future__ import annotations

from safeset.review.server import ReviewApp, ReviewOptions, RunningReview, start_review

__all__ = ["ReviewApp", "ReviewOptions", "RunningReview", "start_review"]
