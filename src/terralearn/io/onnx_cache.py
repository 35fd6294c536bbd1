"""The cache of ONNX exports that ``classify --backend onnx`` runs, beside the model package.

An export is kept with a record of what it depends on (the caller's ``record``: weights, card, tile size,
exporter versions) and the file's SHA-256; it is used only when both match, checked on the very bytes
returned, so a stale, damaged or altered export is exported again, never run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from terralearn.io.atomic import write_json_atomic


def onnx_cache_dir(package: Path) -> Path:
    """Where ``cached_onnx`` keeps exports: ``PKG/.onnx-cache`` in a folder, ``.PKG.zip.onnx-cache`` beside a zip."""
    package = Path(package)
    return package / ".onnx-cache" if package.is_dir() else package.with_name(f".{package.name}.onnx-cache")


def cached_onnx(package: Path, record: dict, export: Callable[[Path], Path], fallback: Path) -> bytes:
    """The cached export of ``package`` matching ``record``, as bytes to give ONNX Runtime.

    ``record`` holds ``weights_sha256`` and ``size``, among what the export depends on. A missing or
    mismatched export is made again by ``export(path)`` (which returns the path written) and its record
    written atomically. Where the cache cannot be written, the export goes to ``fallback`` and is not kept.
    """
    folder = onnx_cache_dir(package)
    onnx_path, record_path = _paths(package, record)
    try:
        saved = json.loads(record_path.read_text(encoding="utf-8"))
        data = onnx_path.read_bytes()
        if saved == {**record, "onnx_sha256": hashlib.sha256(data).hexdigest()}:
            return data
    except (OSError, ValueError):
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(folder)
        export(onnx_path)
    except OSError:  # the cache cannot be written (a read-only package): export for this run only
        onnx_path = export(fallback)
    data = onnx_path.read_bytes()
    with contextlib.suppress(OSError):
        write_json_atomic(record_path, {**record, "onnx_sha256": hashlib.sha256(data).hexdigest()})
    return data


def _paths(package: Path, record: dict) -> tuple[Path, Path]:
    """The export and its record for ``record``'s weights and tile size."""
    stem = f"{record['weights_sha256'][:16]}-{record['size'][0]}x{record['size'][1]}"
    folder = onnx_cache_dir(package)
    return folder / f"{stem}.onnx", folder / f"{stem}.json"


def has_cached_onnx(package: Path, record: dict) -> bool:
    """Whether an export matching ``record`` is cached (its bytes are checked again when ``cached_onnx`` reads it)."""
    onnx_path, record_path = _paths(package, record)
    try:
        saved = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(saved, dict)
        and {k: v for k, v in saved.items() if k != "onnx_sha256"} == record
        and (onnx_path.is_file())
    )
