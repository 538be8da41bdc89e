"""PDQ perceptual hashes: bank import, the multi-index search (compiled kernels), the matcher."""

from safeset.kinds.pdq import bank, matcher  # noqa: F401  (registration)
