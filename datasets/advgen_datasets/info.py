"""What the registry knows about each dataset and what the data dir holds: the API behind
``advgen datasets list`` and ``advgen datasets info`` (plain dicts, ready for ``--json``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from advgen.errors import InvalidDataError
from advgen_datasets.fetch import checksum_status, data_dir, file_path
from advgen_datasets.manifest import Layout, Manifest, Split, get_manifest, registry


def summary() -> list[dict[str, Any]]:
    """One entry per registered dataset, with how many of its files are in the data dir."""
    out = []
    for name, m in registry().items():
        present = sum(file_path(m, f).is_file() for f in m.files)
        out.append(
            {
                "name": name,
                "description": m.description,
                "default_split": m.default_split,
                "splits": list(m.splits),
                "files": len(m.files),
                "files_present": present,
                "homepage": m.homepage,
                "manifest": str(m.path) if m.path else None,
            }
        )
    return out


def schema_summary(layout: Layout) -> dict[str, Any]:
    cols = layout.columns or []
    features = [c for c in cols if c.role == "feature"]
    return {
        "label": layout.label,
        "features": len(features),
        "kinds": dict(Counter(c.kind for c in features)),
        "ignored": [c.name for c in cols if c.role == "ignored"],
        "columns": [{"name": c.name, "kind": c.kind, "role": c.role} for c in cols],
        "categories": {k: list(v) for k, v in layout.categories.items()},
        "feature_groups": {k: list(v) for k, v in layout.feature_groups.items()},
    }


def _read_label_column(path: Any, layout: Layout) -> pd.Series:
    """Only the label column of one file: class balance without parsing every feature."""
    assert layout.columns is not None and layout.label is not None
    fmt = layout.format
    if fmt.type == "parquet":
        df = pd.read_parquet(path)
        df.columns = [str(c).strip() for c in df.columns]
        return df[layout.label]
    if fmt.header:
        header = pd.read_csv(path, sep=fmt.separator, nrows=0, encoding=fmt.encoding, encoding_errors="replace")
        stripped = [str(c).strip() for c in header.columns]
        if layout.label not in stripped:
            raise InvalidDataError(f"{path} has no column {layout.label!r}")
        idx = stripped.index(layout.label)
    else:
        idx = [c.name for c in layout.columns].index(layout.label)
    for encoding in (fmt.encoding, "cp1252"):
        try:
            col = pd.read_csv(
                path, sep=fmt.separator, header=0 if fmt.header else None, usecols=[idx], dtype=str,
                encoding=encoding, encoding_errors="strict" if encoding == fmt.encoding else "replace",
            )
            return col.iloc[:, 0]
        except UnicodeDecodeError:
            continue
    raise InvalidDataError(f"cannot decode {path}")


def class_balance(manifest: Manifest, split: Split) -> dict[str, int] | None:
    """Rows per label over the split's files, cleaned as the loader cleans labels; None if any is missing."""
    layout = manifest.layout(split)
    if layout.label is None:
        return None
    paths = [file_path(manifest, f) for f in split.files]
    if not all(p.is_file() for p in paths):
        return None
    counts: Counter[str] = Counter()
    for p in paths:
        lab = _read_label_column(p, layout).str.strip().str.replace(r"\s+", " ", regex=True)
        lab = lab.replace(layout.label_aliases)
        lab = lab[lab != layout.label]  # repeated header rows
        if layout.label_missing is not None:
            lab = lab.fillna(layout.label_missing).replace("", layout.label_missing)
        counts.update(lab.dropna()[lab.dropna() != ""].tolist())
    return dict(counts.most_common())


def describe(name: str, split: str | None = None) -> dict[str, Any]:
    """Everything ``advgen datasets info`` shows: files and their state, schema, class balance."""
    m = get_manifest(name)
    sp = m.split(split)
    files = []
    for f, entry in m.files.items():
        p = file_path(m, f)
        files.append(
            {
                "name": f,
                "path": str(p),
                "present": p.is_file(),
                "size": p.stat().st_size if p.is_file() else None,
                "checksum": checksum_status(m, entry),
                "sha256": entry.sha256,
                "git_sha1": entry.git_sha1,
                "rows": entry.rows,
                "url": entry.url,
                "splits": [s.name for s in m.splits.values() if f in s.files],
            }
        )
    balance = class_balance(m, sp)
    layout = m.layout(sp)
    return {
        "name": m.name,
        "description": m.description,
        "homepage": m.homepage,
        "license": m.license,
        "citation": m.citation,
        "manifest": str(m.path) if m.path else None,
        "data_dir": str(data_dir() / m.name),
        "download_hint": m.download_hint or None,
        "default_split": m.default_split,
        "splits": {
            s.name: {"files": list(s.files), "layout": s.layout, "description": s.description}
            for s in m.splits.values()
        },
        "files": files,
        "split": sp.name,
        "schema": schema_summary(layout),
        "class_balance": balance,
        "categories_balance": _category_balance(balance, layout),
    }


def _category_balance(balance: dict[str, int] | None, layout: Layout) -> dict[str, int] | None:
    cmap = layout.category_map()
    if balance is None or cmap is None:
        return None
    out: Counter[str] = Counter()
    for lab, n in balance.items():
        out[cmap.get(lab, lab)] += n
    return dict(out.most_common())
