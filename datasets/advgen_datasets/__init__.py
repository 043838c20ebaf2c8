"""advgen's dataset registry and table loaders.

``load_table(dataset="nsl-kdd")`` reads a registered dataset (manifests in ``manifests/*.toml``,
files in the data dir, verified and downloaded on demand); ``load_table(path=..., label=...)`` reads
any CSV or Parquet file with an inferred, overridable schema. Both return a cleaned :class:`Table`.
"""

from __future__ import annotations

from typing import Any

from advgen_datasets.fetch import data_dir, ensure_file, sha256_file
from advgen_datasets.manifest import KINDS, ROLES, Manifest, get_manifest, registry

_TABLE_NAMES = ("MISSING_CATEGORY", "ColumnSchema", "Table", "load_table", "read_schema_file")


def __getattr__(name: str) -> Any:  # the table loaders import pandas: loaded on first use
    if name in _TABLE_NAMES:
        from advgen_datasets import table

        return getattr(table, name)
    raise AttributeError(f"module 'advgen_datasets' has no attribute {name!r}")


__all__ = [
    "KINDS",
    "MISSING_CATEGORY",
    "ROLES",
    "ColumnSchema",
    "Manifest",
    "Table",
    "data_dir",
    "ensure_file",
    "get_manifest",
    "load_table",
    "read_schema_file",
    "registry",
    "sha256_file",
]
