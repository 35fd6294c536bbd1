"""Model packages: ``model.safetensors`` + ``model.json``, as a folder and a single-file zip.

Loading never unpickles and never executes code from the package: weights are read with
safetensors, the card is JSON, and the weights' SHA-256 recorded in the card must match,
so a tampered or truncated package is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy_bytes
from safetensors.numpy import save_file as save_numpy_file

from terralearn.errors import PackageError
from terralearn.io.atomic import atomic_dir, atomic_file, write_json_atomic

PACKAGE_SCHEMA_VERSION = 2  # 2: any task (``task`` names it); version 1 packages are pixel classification
READABLE_PACKAGE_VERSIONS = (1, 2)
WEIGHTS = "model.safetensors"
CARD = "model.json"
REQUIRED = ("schema_version", "task", "architecture", "bands", "classes", "normalisation", "weights_sha256")


def save_package(out: Path, tensors: dict[str, np.ndarray], card: dict, overwrite: bool = False) -> Path:
    """Write the package folder ``out`` and ``out.zip`` atomically; return the folder."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_numpy_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / WEIGHTS))
        card = {**card, "schema_version": PACKAGE_SCHEMA_VERSION, "weights_sha256": _sha256(tmp / WEIGHTS)}
        card["model_size_mb"] = round((tmp / WEIGHTS).stat().st_size / 2**20, 3)
        write_json_atomic(tmp / CARD, card)
    zip_path = out.with_name(out.name + ".zip")
    with atomic_file(zip_path) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(out / CARD, CARD)
        zf.write(out / WEIGHTS, WEIGHTS)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_package(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a package folder or zip; return (card, tensors). Refuses incomplete or tampered packages."""
    path = Path(path)
    card_bytes, weight_bytes = _read(path, (CARD, WEIGHTS))
    with ThreadPoolExecutor(1, thread_name_prefix="checksum") as pool:
        # hashlib releases the GIL: the checksum runs while the card is parsed and the weights deserialised
        digest = pool.submit(lambda: hashlib.sha256(weight_bytes).hexdigest())
        card = _parse_card(path, card_bytes)
        try:
            tensors, error = load_numpy_bytes(weight_bytes), None
        except SafetensorError as exc:
            tensors, error = None, exc
        if digest.result() != card["weights_sha256"]:
            raise PackageError(
                f"The weights in '{path}' do not match the checksum in its {CARD}: the package was modified or "
                "damaged after training.",
                "Use the package as written by `terralearn train` (or its .zip), or train again.",
            )
    if error is not None:
        raise PackageError(f"The weights in '{path}' cannot be read ({error}).", "Copy the package again.")
    return card, tensors


def read_card(path: Path) -> dict:
    """The card of a package, checked as ``load_package`` checks it but without the weights (to plan work early).

    Whatever depends on the weights must use the card that ``load_package`` returns, whose weights are verified.
    """
    path = Path(path)
    return _parse_card(path, _read(path, (CARD,))[0])


def _read(path: Path, names: tuple[str, ...]) -> list[bytes]:
    """The bytes of the package files ``names`` (folder or zip); a clear error when one is missing."""
    if not path.exists():
        raise PackageError(f"The model package '{path}' does not exist.", "Give the folder or .zip written by train.")
    try:
        if path.is_dir():
            found = [(path / n).read_bytes() if (path / n).exists() else None for n in names]
        else:
            with zipfile.ZipFile(path) as zf:
                members = set(zf.namelist())
                found = [zf.read(n) if n in members else None for n in names]
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"'{path}' is not a readable model package ({exc}).", "Copy the package again.") from None
    missing = [n for n, b in zip(names, found, strict=True) if b is None]
    if missing:
        raise PackageError(
            f"The model package '{path}' is incomplete: {', '.join(missing)} missing.",
            "Copy the whole package folder (or its .zip) again.",
        )
    return found


def _parse_card(path: Path, card_bytes: bytes) -> dict:
    try:
        card = json.loads(card_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{CARD} in '{path}' is not valid JSON ({exc}).", "Copy the package again.") from None
    if not isinstance(card, dict):
        raise PackageError(f"{CARD} in '{path}' is not a JSON object.", "Train or copy the package again.")
    absent = [k for k in REQUIRED if k not in card]
    if absent:
        raise PackageError(f"{CARD} in '{path}' lacks {', '.join(absent)}.", "Train or copy the package again.")
    if card["schema_version"] not in READABLE_PACKAGE_VERSIONS:
        raise PackageError(
            f"'{path}' has package schema version {card['schema_version']!r}; this TerraLearn reads versions "
            f"{', '.join(map(str, READABLE_PACKAGE_VERSIONS))}.",
            "Train the model again with this version.",
        )
    return card
