"""`terralearn export-onnx PKG`: write an ONNX model with the model card in its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors


@handle_errors
def export_onnx(
    package: Annotated[Path, typer.Argument(help="Model package folder or .zip written by `terralearn train`.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="ONNX file (default PKG/model.onnx).")] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Export a model package to ONNX (for ONNX Runtime and QGIS Deepness), verified against PyTorch."""
    from terralearn.predict.onnx import export_onnx as run_export

    path, diff = run_export(package, out)
    console.print(f"ONNX model: {path} (largest difference from PyTorch: {diff:.1e})")
