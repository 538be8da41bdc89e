"""BLAS thread control for many small matrix products.

PDQ multiplies small matrices (64 x a few hundred) once per image. OpenBLAS would spread each product over
every core, and the hand-offs cost more than the product itself (measured: 10 ms instead of 0.3 ms per image
on a busy 2-core machine); parallelism in safeset comes from processes instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    with _controller().limit(limits=1, user_api="blas"):
        yield
