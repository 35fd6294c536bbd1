"""Forms of the web app, derived from the stage configs: one field per setting, same names, same descriptions.

A form's values arrive as JSON with workspace-relative paths; ``parse`` turns them into the stage's
typed config (absolute paths inside the workspace) or into per-field messages for inline validation.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from terralearn.config import (
    CheckConfig,
    ClassifyConfig,
    DetectConfig,
    DetectionEvaluateConfig,
    EvaluateConfig,
    ExportConfig,
    TrainConfig,
)
from terralearn.errors import TerraLearnError
from terralearn.web.workspace import WorkspaceFiles

STAGES: dict[str, type[BaseModel]] = {
    "check": CheckConfig,
    "export": ExportConfig,
    "train": TrainConfig,
    "classify": ClassifyConfig,
    "evaluate": EvaluateConfig,
    "detect": DetectConfig,
    "evaluate_detections": DetectionEvaluateConfig,
}

#: Path settings and what may be picked for them from the workspace: (kinds, several allowed).
PICKERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "rasters": (("raster",), True),
    "labels": (("vector", "raster", "map"), False),
    "mask": (("vector",), False),
    "aoi": (("vector",), False),
    "chips": (("chipset",), False),
    "model": (("package",), False),
    "prediction": (("map",), False),
    "reference": (("vector", "raster", "map"), False),
    "image": (("raster",), True),
    "raster": (("raster",), False),
}
#: Pickers that differ by stage: detections are a GeoPackage; their reference may be an annotation file.
STAGE_PICKERS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "evaluate_detections": {"prediction": (("vector",), False), "reference": (("vector", "other"), False)},
}
#: Settings whose choices are the fields of the vector picked in another setting.
FIELD_OF = {"check": {"class_field": "labels", "class_name_field": "labels"},
            "export": {"class_field": "labels", "class_name_field": "labels"},
            "evaluate": {"class_field": "reference"}, "evaluate_detections": {"class_field": "reference"}}  # fmt: skip
#: Output settings: a name inside the workspace, suggested so that nothing has to be typed.
OUTPUTS = {
    "export": "chips/chips-{n}",
    "train": "models/model-{n}",
    "classify": "maps/map-{n}.tif",
    "evaluate": "evaluations/evaluation-{n}",
    "detect": "detections/detections-{n}.gpkg",
    "evaluate_detections": "evaluations/detections-{n}",
}
#: Settings shown first; the rest sit under "More settings".
BASIC = {
    "check": ["rasters", "labels", "class_field", "class_name_field", "tile_size_x", "tile_size_y"],
    "export": ["task", "rasters", "labels", "class_field", "class_name_field", "tile_size_x", "tile_size_y", "stride_x",
               "stride_y", "split", "val_fraction", "out"],
    "train": ["chips", "model", "time_budget", "backbone", "epochs", "batch_size", "loss", "class_balancing", "oversample",
              "out", "name"],
    "classify": ["model", "rasters", "tile_size", "overlap", "batch_size", "tta", "backend", "probabilities", "out"],
    "evaluate": ["prediction", "reference", "class_field", "image", "out"],
    "detect": ["model", "rasters", "tile_size", "threshold", "merge", "aoi", "out"],
    "evaluate_detections": ["prediction", "reference", "class_field", "min_iou", "aoi", "out"],
}  # fmt: skip
#: Model-specific choices offered as a list (any other value can still be typed).
SUGGESTIONS = {
    "backbone": ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "efficientnet-b0", "mit_b0"],
}
HIDDEN = {"schema_version"}
#: Settings the web app sets itself: listed in the forms (widget "fixed", not drawn), never taken from them.
#: The workspace is the app's own; an interrupted run is resumed from the Runs page.
FIXED = {"workspace", "resume"}
#: Settings a config leaves out only when resuming: the web app resumes from the Runs page, so its forms require them.
RESUME_OPTIONAL = {"train": {"chips", "out"}}
#: Labels that the field name does not spell well.
LABELS = {
    "tta": "Test-time augmentation",
    "aoi": "Area of interest",
    "out": "Output name",
    "rasters": "Rasters (in stacking order)",
    "tile_size_x": "Tile width (px)",
    "tile_size_y": "Tile height (px)",
    "stride_x": "Stride x (px)",
    "stride_y": "Stride y (px)",
    "tile_size": "Tile size (px)",
    "overlap": "Overlap (px)",
    "val_fraction": "Validation fraction",
    "rgb_bands": "RGB bands",
    "image": "Image shown with the map",
    "model": "Model",
    "backend": "Inference backend",
    "cog": "Cloud-Optimized GeoTIFF",
    "threshold": "Score threshold",
    "min_iou": "Minimum IoU",
    "raster": "Raster detected (for the tile seams)",
    "nms_overlap": "Duplicate overlap",
}


def _unwrap(annotation) -> tuple[object, bool]:
    """(inner type, optional?) of ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _bounds(info: FieldInfo) -> dict:
    out = {}
    for meta in info.metadata:
        for attr, key in (("gt", "exclusive_min"), ("ge", "min"), ("lt", "exclusive_max"), ("le", "max")):
            value = getattr(meta, attr, None)
            if value is not None:
                out[key] = value
    return out


def field_spec(stage: str, name: str, info: FieldInfo) -> dict:
    """How one setting is shown: widget, label, help text, default, choices and bounds."""
    inner, optional = _unwrap(info.annotation)
    origin = typing.get_origin(inner)
    spec: dict = {
        "name": name,
        "label": LABELS.get(name, name.replace("_", " ").capitalize()),
        "help": info.description or "",
        "required": info.is_required() or name in RESUME_OPTIONAL.get(stage, ()),
        "optional": optional and name not in RESUME_OPTIONAL.get(stage, ()),
        "basic": name in BASIC.get(stage, []),
    }
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    if name in FIXED:
        spec.update(widget="fixed")
    elif name in PICKERS and inner in (Path, list[Path]):
        kinds, multiple = STAGE_PICKERS.get(stage, {}).get(name, PICKERS[name])
        spec.update(widget="pick", kinds=list(kinds), multiple=multiple)
    elif name == "out":
        spec.update(widget="output", pattern=OUTPUTS.get(stage, "{n}"))
    elif name in FIELD_OF.get(stage, {}):
        spec.update(widget="field", source=FIELD_OF[stage][name])
    elif origin is typing.Literal:
        spec.update(widget="choice", choices=list(typing.get_args(inner)))
    elif origin is list:
        (item,) = typing.get_args(inner)
        if typing.get_origin(item) is typing.Literal:
            spec.update(widget="list", choices=list(typing.get_args(item)), item="text")
        else:
            spec.update(widget="list", item="number" if item in (int, float) else "text")
    elif inner is bool:
        spec.update(widget="checkbox")
    elif inner in (int, float):
        spec.update(widget="number", step=1 if inner is int else "any", **_bounds(info))
    else:
        spec.update(widget="text", suggestions=SUGGESTIONS.get(name, []))
    spec["default"] = default.as_posix() if isinstance(default, Path) else default
    return spec


def form_spec(stage: str) -> list[dict]:
    """Every setting of a stage, basic ones first, in the config's order."""
    config = STAGES[stage]
    fields = [field_spec(stage, n, f) for n, f in config.model_fields.items() if n not in HIDDEN]
    order = BASIC.get(stage, [])
    return sorted(fields, key=lambda f: (not f["basic"], order.index(f["name"]) if f["basic"] else 0))


def suggest_output(stage: str, files: WorkspaceFiles) -> str:
    """The first free output name of a stage (chips/chips-1, models/model-2, ...)."""
    pattern = OUTPUTS[stage]
    for n in range(1, 10_000):
        candidate = pattern.format(n=n)
        if not (files.root / candidate).exists() and not (files.root / f"{candidate}.zip").exists():
            return candidate
    return pattern.format(n="new")


def _convert(spec: dict, value, files: WorkspaceFiles):
    """One raw form value -> the config's type (paths resolved inside the workspace)."""
    if value is None or (isinstance(value, str) and not value.strip() and spec["widget"] != "text"):
        return None
    if isinstance(value, str) and not value.strip() and spec.get("optional"):
        return None
    widget = spec["widget"]
    if widget == "pick":
        values = value if isinstance(value, list) else [value]
        paths = [str(files.resolve(str(v))) for v in values if str(v).strip()]
        if spec["multiple"]:
            return paths
        return paths[0] if paths else None
    if widget == "output":
        return str(files.resolve(str(value).strip(), must_exist=False))
    if widget == "list":
        items = value if isinstance(value, list) else str(value).replace(";", ",").split(",")
        items = [str(v).strip() for v in items if str(v).strip()]
        return [int(v) if spec.get("item") == "number" and v.lstrip("-").isdigit() else v for v in items]
    return value


def parse(stage: str, values: dict, files: WorkspaceFiles) -> tuple[BaseModel | None, dict]:
    """Form values -> (config or None, per-field error messages)."""
    specs = {f["name"]: f for f in form_spec(stage)}
    errors: dict[str, str] = {}
    clean: dict = {}
    for name, raw in (values or {}).items():
        if name not in specs:
            errors[name] = f"Unknown setting '{name}'."
            continue
        if specs[name]["widget"] == "fixed":
            errors[name] = f"The setting '{name}' is set by the app, not by a form."
            continue
        try:
            value = _convert(specs[name], raw, files)
        except TerraLearnError as exc:
            errors[name] = f"{exc.message} {exc.fix}".strip()
            continue
        if value is None and not specs[name]["required"] and not specs[name]["optional"]:
            continue  # left empty: the default applies
        clean[name] = value
    if errors:
        return None, errors
    try:
        config = STAGES[stage].model_validate(clean)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err.get("loc") or ("",)
            field = str(loc[0]) if loc and loc[0] in specs else "_form"
            msg = err.get("msg", "invalid value").removeprefix("Value error, ")
            bad = err.get("input")
            quoted = f" (got {bad!r})" if field != "_form" and not isinstance(bad, dict) and bad is not None else ""
            errors.setdefault(field, msg[0].upper() + msg[1:] + quoted + ".")
        return None, errors
    return config, {}
