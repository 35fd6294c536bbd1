"""A random forest as a file of its own: safetensors arrays plus string metadata, written atomically.

The arrays are those of :func:`terralearn.models.forest.to_tensors`; reading validates them with
:func:`terralearn.models.forest.from_tensors`. Never unpickles.
"""

from __future__ import annotations

from pathlib import Path

from terralearn.io.atomic import atomic_file
from terralearn.models.forest import FORMAT_VERSION, ForestArrays, from_tensors, to_tensors


def save_forest(path: str | Path, forest: ForestArrays, metadata: dict[str, str] | None = None) -> None:
    """Write the forest to a safetensors file (atomically); ``metadata`` goes into its JSON header."""
    from safetensors.numpy import save_file

    meta = {"format": "terralearn.forest", "format_version": FORMAT_VERSION}
    for key, val in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise ValueError(f"metadata must map str to str, got {key!r}: {val!r}")
        meta[key] = val
    with atomic_file(Path(path)) as tmp:
        save_file(to_tensors(forest), str(tmp), metadata=meta)


def load_forest(path: str | Path) -> ForestArrays:
    """Read and validate a forest written by :func:`save_forest` (safetensors: never unpickles)."""
    from safetensors.numpy import load_file

    return from_tensors(load_file(str(path)))


def load_forest_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored by :func:`save_forest` (reads only the file's JSON header)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})
