"""safeset: audit and clean image-text datasets against lists of known abuse material.

No image is ever rendered or written for a person to view: safeset works from hashes, URLs and scores.
"""

__version__ = "0.1.0"
