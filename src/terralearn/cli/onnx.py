"""`terralearn export-onnx PKG`: write an ONNX model with the model card in its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors
from terralearn.cli._options import given, option
from terralearn.config import OnnxConfig


@handle_errors
def export_onnx(
    package: Annotated[Path, typer.Argument(help=OnnxConfig.model_fields["package"].description)],
    out: Annotated[Path | None, option(OnnxConfig, "out", "--out", "-o")] = None,
    size: Annotated[
        int | None,
        typer.Option(
            "--size", help="Square tile side of the graph in pixels (default: the training chip).", show_default=False
        ),
    ] = None,
    workspace: Workspace = None,
    debug: Debug = False,
) -> None:
    """Export a model package to ONNX (for ONNX Runtime and QGIS Deepness), verified against PyTorch."""
    from terralearn.predict.onnx import export_onnx as run_export

    result = run_export(
        OnnxConfig.build(**given(package=package, out=out, size=None if size is None else (size, size)))
    )
    console.print(f"ONNX model: {result.path} (largest difference from PyTorch: {result.difference:.1e})")
