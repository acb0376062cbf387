"""Which reader a ``--data`` spec names: your own CSV/TSV of pairs, WebDataset shards, or (None)
a folder of the toy world."""

from __future__ import annotations

from miniclip.datasets.csv_pairs import CSV_SUFFIXES
from miniclip.datasets.shards import is_shard_spec


def own_data_kind(spec) -> str | None:
    """"csv", "shards", or None for the toy world's folder (and for no spec at all)."""
    if spec is None:
        return None
    if str(spec).endswith(CSV_SUFFIXES):
        return "csv"
    if is_shard_spec(spec):
        return "shards"
    return None
