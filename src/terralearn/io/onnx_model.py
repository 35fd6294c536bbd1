"""Reading what an ONNX model file says about itself: its input and outputs, and its metadata properties.

The weights are not loaded (``load_external_data=False`` and only the graph's declarations are kept), so this
is cheap enough to check a model before any raster is opened. Nothing in the file is executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terralearn.errors import PackageError

Dim = int | str | None  # a fixed side, a named dynamic one, or unknown


@dataclass(frozen=True)
class OnnxHeader:
    path: Path
    input_name: str
    input_shape: tuple[Dim, ...]
    outputs: tuple[tuple[str, tuple[Dim, ...]], ...]
    metadata: dict[str, str]  # the raw metadata properties (values as written, often JSON)


def _shape(value_info) -> tuple[Dim, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def read_onnx_header(path: Path) -> OnnxHeader:
    """The input, outputs and metadata of the ONNX file at ``path``; a clear error if it is no ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise PackageError(f"The ONNX model '{path}' does not exist.", "Give the path of a .onnx file.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise PackageError(f"'{path}' is not a readable ONNX model ({type(exc).__name__}).",
                           "Export the model to ONNX again, or copy the file again.") from None  # fmt: skip
    initialisers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initialisers]
    if len(inputs) != 1:
        raise PackageError(f"'{path}' has {len(inputs)} inputs; a detector over map tiles takes one image.",
                           "Export the model with a single image input (batch, bands, height, width).")  # fmt: skip
    shape = _shape(inputs[0])
    if len(shape) != 4:
        raise PackageError(f"'{path}' takes a {len(shape)}-dimensional input {shape}; a detector takes "
                           "(batch, bands, height, width).", "Export the model with an NCHW image input.")  # fmt: skip
    outputs = tuple((o.name, _shape(o)) for o in model.graph.output)
    return OnnxHeader(path, inputs[0].name, shape, outputs, {p.key: p.value for p in model.metadata_props})


def is_onnx_file(path: Path) -> bool:
    """Whether ``path`` names an ONNX model file (by its suffix, as QGIS Deepness does)."""
    return Path(path).suffix.lower() == ".onnx"


__all__ = ["OnnxHeader", "is_onnx_file", "read_onnx_header"]
