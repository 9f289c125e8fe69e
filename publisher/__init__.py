"""publisher: per-category RSS, Atom and JSON feeds and weekly email digests for news sites."""

__version__ = "0.2.0"
