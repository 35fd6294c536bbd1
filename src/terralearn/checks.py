"""Pre-flight checks of an export's inputs: one function per pitfall.

Each check returns findings with a severity (error / warning / info), a plain-words
message quoting what was found, and a fix. ``run_checks`` runs them all; ``export`` runs
the same checks first and refuses to start on any error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import shapely

from terralearn.classes import normalise_values
from terralearn.config import CheckConfig
from terralearn.errors import LabelError
from terralearn.geo.grid import bounds_intersection
from terralearn.geo.tiling import suggest_tile_size
from terralearn.io.raster import RasterStack, auto_resampling, footprint_in
from terralearn.labels import Census, Inputs, load_inputs, prepare_labels, take_census

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Finding:
    check: str
    severity: Severity
    message: str
    fix: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckReport:
    findings: list[Finding]
    inputs: Inputs | None = None
    labels: object | None = None
    census: Census | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "counts": {s: sum(f.severity == s for f in self.findings) for s in SEVERITY_ORDER},
            "findings": [f.as_dict() for f in self.findings],
        }


def _fmt_len(metres: float, geographic: bool) -> str:
    if geographic:
        return f"{metres:.4g} degrees"
    return f"{metres / 1000:.3g} km" if metres >= 1000 else f"{metres:.3g} m"


# ----------------------------------------------------------------------------- raster checks


def check_rasters(inputs: Inputs) -> list[Finding]:
    """CRS present, north-up grid, geographic CRS, and how other rasters are brought onto the first grid."""
    out: list[Finding] = []
    first = inputs.rasters[0]
    g = first.grid
    if g.crs is None:
        out.append(Finding("raster_crs", "error", f"The raster '{first.path}' has no coordinate reference system.",
                           "Assign its CRS, e.g. gdal_edit.py -a_srs EPSG:32615 FILE."))  # fmt: skip
    if g.is_rotated or g.is_south_up:
        kind = "rotated" if g.is_rotated else "south-up"
        out.append(Finding("raster_grid", "error", f"The raster '{first.path}' has a {kind} pixel grid "
                           f"(transform {tuple(round(v, 6) for v in g.transform[:6])}).",
                           "Warp it to a north-up grid first: gdalwarp -of GTiff IN OUT."))  # fmt: skip
    if g.is_geographic:
        out.append(Finding("geographic_crs", "warning",
                           f"The raster '{first.path}' is in a geographic CRS ({g.crs.to_string()}): pixel and tile "
                           f"sizes are in degrees ({g.res[0]:.6g} deg per pixel) and pixels are not square on the "
                           "ground.",
                           "Reproject to a projected CRS such as the local UTM zone: gdalwarp -t_srs EPSG:XXXXX."))  # fmt: skip
    for i, info in enumerate(inputs.rasters[1:], start=1):
        if info.grid.same_as(g):
            continue
        if info.grid.crs is None:
            out.append(Finding("raster_crs", "error", f"The raster '{info.path}' has no CRS and is on another grid "
                               f"than '{first.path}'.", "Assign its CRS with gdal_edit.py -a_srs EPSG:XXXX FILE."))  # fmt: skip
            continue
        if bounds_intersection(footprint_in(info, g.crs), g.bounds) is None:
            out.append(Finding("raster_overlap", "error",
                               f"The raster '{info.path}' does not overlap '{first.path}', whose grid the stack uses.",
                               "Stack rasters that cover the same area, or put the raster that defines the area "
                               "first."))  # fmt: skip
            continue
        method = inputs.config.resampling_for(i)
        if method == "auto":
            method = auto_resampling(info, g)
        out.append(Finding("raster_resampled", "info",
                           f"'{info.path}' ({info.grid.res[0]:.4g} x {info.grid.res[1]:.4g} px, "
                           f"{info.grid.crs.to_string()}) is resampled onto the grid of '{first.path}' "
                           f"({g.res[0]:.4g} x {g.res[1]:.4g} px, {g.crs.to_string()}) with '{method}'.",
                           "Nothing to do; pass --resampling to choose another method.",
                           {"raster": str(info.path), "resampling": method}))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- label checks


def check_labels_crs(inputs: Inputs) -> list[Finding]:
    """Labels in another CRS are reprojected to the raster's (never the other way round)."""
    g = inputs.grid
    crs = inputs.vector.crs if inputs.vector is not None else inputs.label_raster.grid.crs
    if crs is None:
        return [Finding("labels_crs", "warning", f"The labels '{inputs.config.labels}' have no CRS; they are "
                        f"assumed to be in the raster's CRS ({g.crs.to_string() if g.crs else 'none'}).",
                        "If that is wrong, assign the labels' CRS in your GIS and export them again.")]  # fmt: skip
    if g.crs is not None and crs != g.crs:
        return [Finding("labels_crs", "info", f"The labels are in {crs.to_string()} and the raster in "
                        f"{g.crs.to_string()}: the labels are reprojected to the raster's CRS (the raster is never "
                        "resampled for the labels).", "Nothing to do.",
                        {"labels_crs": crs.to_string(), "raster_crs": g.crs.to_string()})]  # fmt: skip
    return []


def check_class_field(inputs: Inputs) -> list[Finding]:
    """The class field (and optional class-name field) exist in the vector labels."""
    if inputs.vector is None:
        return []
    cfg = inputs.config
    fields = [c for c in inputs.vector.columns if c != inputs.vector.geometry.name]
    out = []
    if cfg.class_field and cfg.class_value:
        out.append(Finding("class_field", "error", f"Both a class field ('{cfg.class_field}') and one class for all "
                           f"features ('{cfg.class_value}') were given.", "Pass only one of --class-field and "
                           "--class-value."))  # fmt: skip
    elif not cfg.class_field and not cfg.class_value:
        out.append(Finding("class_field", "error", f"No class field given for the vector labels "
                           f"'{cfg.labels}'. Fields present: {', '.join(fields) or '(none)'}.",
                           "Pass --class-field with the field holding the class of each polygon, or --class-value "
                           "NAME if every feature is of one class (e.g. building footprints)."))  # fmt: skip
    elif cfg.class_field and cfg.class_field not in inputs.vector.columns:
        out.append(Finding("class_field", "error", f"The class field '{cfg.class_field}' is not in '{cfg.labels}'. "
                           f"Fields present: {', '.join(fields) or '(none)'}.",
                           "Pass --class-field with one of the fields listed."))  # fmt: skip
    if cfg.class_name_field and cfg.class_name_field not in inputs.vector.columns:
        out.append(Finding("class_field", "error", f"The class-name field '{cfg.class_name_field}' is not in "
                           f"'{cfg.labels}'. Fields present: {', '.join(fields) or '(none)'}.",
                           "Pass --class-name-field with one of the fields listed, or leave it out."))  # fmt: skip
    return out


def check_class_values(inputs: Inputs) -> list[Finding]:
    """Class values are integers or text; count missing ones."""
    cfg = inputs.config
    if inputs.vector is None or not cfg.class_field or cfg.class_field not in inputs.vector.columns:
        return []
    col = inputs.vector[cfg.class_field]
    out = []
    missing = int(col.isna().sum())
    present = col.dropna()
    if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_bool_dtype(col):
        return [Finding("class_values", "error", f"The class field '{cfg.class_field}' holds {col.dtype} values.",
                        "Use a field of integer codes or class names.")]  # fmt: skip
    try:
        values = normalise_values(present.tolist())
    except LabelError as exc:
        return [Finding("class_values", "error", exc.message, exc.fix)]
    if cfg.class_name_field and cfg.class_name_field in inputs.vector.columns:
        out += _check_class_names(inputs.vector, cfg.class_field, cfg.class_name_field)
    if missing:
        out.append(Finding("class_values", "warning", f"{missing} of {len(col)} label features have no value in "
                           f"'{cfg.class_field}'; they are left out.", "Fill in their class in your GIS to use them.",
                           {"missing": missing}))  # fmt: skip
    if not values:
        out.append(Finding("class_values", "error", f"No label feature has a class value in '{cfg.class_field}'.",
                           "Choose the field that holds the classes."))  # fmt: skip
    return out


def _check_class_names(gdf, class_field: str, name_field: str) -> list[Finding]:
    """A class value with several names (or a name with several values) is usually a labelling slip."""
    pairs = gdf[[class_field, name_field]].dropna().astype(str)
    out = []
    groups = pairs.groupby(class_field)[name_field].value_counts()
    for key in pairs[class_field].unique():
        counts = groups[key]
        if len(counts) > 1:
            listing = ", ".join(f"'{k}' ({n} feature{'s' if n > 1 else ''})" for k, n in counts.items())
            out.append(Finding("class_names", "warning", f"Class {class_field} = {key} has several names in "
                               f"'{name_field}': {listing}. The most frequent name is used.",
                               "Check those features in your GIS: the class or the name was probably mistyped."))  # fmt: skip
    return out


def check_geometries(inputs: Inputs) -> list[Finding]:
    """Null, empty and invalid geometries; points or lines without a buffer."""
    if inputs.vector is None:
        return []
    cfg = inputs.config
    geoms = inputs.vector.geometry.to_numpy()
    null = sum(g is None for g in geoms)
    present = np.array([g for g in geoms if g is not None], dtype=object)
    empty = int(shapely.is_empty(present).sum()) if len(present) else 0
    invalid = int((~shapely.is_valid(present) & ~shapely.is_empty(present)).sum()) if len(present) else 0
    out = []
    if null or empty:
        out.append(Finding("geometries", "warning", f"{null} null and {empty} empty geometries in '{cfg.labels}' are "
                           "dropped.", "Nothing to do, or delete them in your GIS.",
                           {"null": null, "empty": empty}))  # fmt: skip
    if invalid:
        action = "repaired (shapely make_valid)" if cfg.invalid_geometries == "fix" else "dropped"
        out.append(Finding("geometries", "warning", f"{invalid} invalid geometries (self-intersections, bad rings) "
                           f"in '{cfg.labels}' are {action}.",
                           "Pass --invalid-geometries drop to drop them instead, or fix them in your GIS "
                           "(e.g. QGIS 'Fix geometries')." if cfg.invalid_geometries == "fix" else
                           "Pass --invalid-geometries fix to repair them instead.",
                           {"invalid": invalid, "action": cfg.invalid_geometries}))  # fmt: skip
    kinds = shapely.get_type_id(present) if len(present) else np.array([])
    n_lp = int(np.isin(kinds, [0, 1, 2, 4, 5]).sum())
    if n_lp and cfg.buffer_radius <= 0:
        out.append(Finding("geometries", "warning", f"{n_lp} label features are points or lines and no buffer is "
                           "set: each will label only the pixels it touches.",
                           "Pass --buffer-radius (in the raster's CRS units) to label an area around them."))  # fmt: skip
    return out


def check_overlap(inputs: Inputs) -> list[Finding]:
    """Labels (and the mask) overlap the raster."""
    g = inputs.grid
    out = []
    if inputs.vector is not None:
        gdf = inputs.vector[~inputs.vector.geometry.isna() & ~inputs.vector.geometry.is_empty]
        if len(gdf) == 0:
            return [Finding("labels_overlap", "error", f"The labels '{inputs.config.labels}' hold no geometry.",
                            "Give a layer with label polygons.")]  # fmt: skip
        if gdf.crs is not None and gdf.crs.is_geographic:
            x0, y0, x1, y1 = gdf.total_bounds
            if x0 < -180.5 or x1 > 360.5 or y0 < -90.5 or y1 > 90.5:
                return [Finding("labels_crs", "error", f"The labels '{inputs.config.labels}' declare the geographic "
                                f"CRS {gdf.crs.to_string()} (degrees), but their coordinates span x {x0:.6g} to "
                                f"{x1:.6g}, y {y0:.6g} to {y1:.6g}, which are not degrees.",
                                "The CRS declaration is wrong (GeoJSON is always EPSG:4326): save the labels as a "
                                "GeoPackage with their true CRS.")]  # fmt: skip
        if gdf.crs is not None and g.crs is not None and gdf.crs != g.crs:
            gdf = gdf.to_crs(g.crs)
        inside = gdf.intersects(shapely.box(*g.bounds)).to_numpy()
        if not inside.any():
            lb = tuple(round(v, 3) for v in gdf.total_bounds)
            out.append(Finding("labels_overlap", "error", f"No label feature overlaps the raster: labels span {lb}, "
                               f"the raster {tuple(round(v, 3) for v in g.bounds)} (both in the raster's CRS).",
                               "Check that the labels and raster cover the same area and that the labels' CRS is "
                               "declared correctly (a wrong .prj is the usual cause)."))  # fmt: skip
        elif not inside.all():
            n = int((~inside).sum())
            out.append(Finding("labels_overlap", "warning", f"{n} of {len(gdf)} label features lie outside the "
                               "raster and are ignored.", "Nothing to do, or clip the labels to the raster.",
                               {"outside": n}))  # fmt: skip
    elif inputs.label_raster is not None:
        lr = inputs.label_raster
        crs_known = lr.grid.crs is not None and g.crs is not None
        if crs_known and bounds_intersection(footprint_in(lr, g.crs), g.bounds) is None:
            out.append(Finding("labels_overlap", "error", f"The label raster '{lr.path}' does not overlap the "
                               "image raster.", "Use labels that cover the same area as the image."))  # fmt: skip
        if lr.count != 1:
            out.append(Finding("labels_bands", "error", f"The label raster '{lr.path}' has {lr.count} bands; a "
                               "classified raster has one.", "Extract the class band: gdal_translate -b N IN OUT."))  # fmt: skip
        if any(np.issubdtype(np.dtype(d), np.floating) for d in lr.dtypes):
            out.append(Finding("class_values", "info", f"The label raster '{lr.path}' is stored as floating point; "
                               "its values must still be whole numbers.", "Nothing to do if they are."))  # fmt: skip
    if inputs.mask is not None:
        m = inputs.mask
        if m.crs is not None and g.crs is not None and m.crs != g.crs:
            m = m.to_crs(g.crs)
        if not m.intersects(shapely.box(*g.bounds)).any():
            out.append(Finding("mask_overlap", "error", f"The mask '{inputs.config.mask}' does not overlap the "
                               "raster.", "Give area-of-interest polygons that cover part of the raster."))  # fmt: skip
    return out


def check_tile_fits_raster(inputs: Inputs) -> list[Finding]:
    cfg = inputs.config
    g = inputs.grid
    if cfg.tile_size_x > g.width or cfg.tile_size_y > g.height:
        return [Finding("tile_size", "error", f"The tile size {cfg.tile_size_x} x {cfg.tile_size_y} px is larger "
                        f"than the raster ({g.width} x {g.height} px).",
                        f"Use --tile-size {suggest_tile_size(min(g.width, g.height) / 4, min(g.width, g.height))} "
                        "or smaller.")]  # fmt: skip
    return []


STRUCTURAL_CHECKS: list[Callable[[Inputs], list[Finding]]] = [
    check_rasters,
    check_labels_crs,
    check_class_field,
    check_class_values,
    check_geometries,
    check_overlap,
    check_tile_fits_raster,
]


# ----------------------------------------------------------------------------- checks on prepared labels


def check_tile_vs_polygons(inputs: Inputs, labels) -> list[Finding]:
    """Tile size versus pixel size versus polygon size: the pitfall of mostly unlabelled chips."""
    if labels.kind != "vector" or len(labels.gdf) == 0 or labels.background:
        return []
    cfg = inputs.config
    g = inputs.grid
    px = np.asarray(labels.polygon_pixels)
    px = px[px > 0]
    if len(px) == 0:
        return []
    median_px = float(np.median(px))
    side_px = math.sqrt(median_px)
    tile = max(cfg.tile_size_x, cfg.tile_size_y)
    ground = _fmt_len(tile * g.res[0], g.is_geographic)
    fill = min(1.0, median_px / (cfg.tile_size_x * cfg.tile_size_y))
    suggestion = suggest_tile_size(side_px, min(g.width, g.height))
    details = {"median_polygon_pixels": median_px, "median_polygon_side_pixels": side_px,
               "tile_ground_size": ground, "suggested_tile_size": suggestion,
               "median_polygon_fraction_of_tile": fill}  # fmt: skip
    unit = "degree" if g.is_geographic else (g.crs.linear_units if g.crs else "unit")
    text = (f"Tiles of {cfg.tile_size_x} x {cfg.tile_size_y} px at {g.res[0]:.4g} {unit} pixels span {ground}; the median "
            f"label polygon covers {median_px:.0f} px (about {side_px:.0f} px across), {fill:.1%} of a tile.")  # fmt: skip
    if side_px < tile / 8:
        return [Finding("tile_size", "warning", text + " Most of each chip will be unlabelled and training sees few "
                        "labelled pixels per chip.", f"Use --tile-size {suggestion} (about four polygons across), "
                        "or label larger areas.", details)]  # fmt: skip
    if side_px > 2 * tile and tile < 512:
        return [Finding("tile_size", "info", text + " Chips see only the inside of most polygons, with little "
                        "context.", f"Consider --tile-size {suggestion}.", details)]  # fmt: skip
    return [Finding("tile_size", "info", text, "Nothing to do.", details)]


def check_class_balance(inputs: Inputs, labels, census: Census) -> list[Finding]:
    """Per-class pixel counts and fractions; warn when the rarest class is under 1 %."""
    counts = census.class_pixels.sum(axis=1)
    total = int(counts.sum())
    if total == 0:
        return [Finding("class_balance", "error", "No labelled pixel falls on valid raster data.",
                        "Check that labels and raster overlap and that the labelled area is not all nodata.")]  # fmt: skip
    table = [{"index": c.index, "value": c.value, "name": c.name, "pixels": int(counts[c.index]),
              "fraction": counts[c.index] / total} for c in labels.classes]  # fmt: skip
    rarest = min(table, key=lambda r: r["pixels"])
    summary = ", ".join(f"{r['name']} {r['fraction']:.1%}" for r in table)
    out = []
    if rarest["fraction"] < 0.01:
        out.append(Finding("class_balance", "warning", f"Classes are imbalanced: the rarest, '{rarest['name']}', "
                           f"has {rarest['pixels']} of {total} labelled pixels ({rarest['fraction']:.2%}). "
                           f"Per class: {summary}.",
                           "Train with focal loss and class balancing, and oversample chips holding rare classes "
                           "(terralearn train --loss focal --class-balancing --oversample), or label more of the "
                           "rare class.", {"classes": table}))  # fmt: skip
    else:
        out.append(Finding("class_balance", "info", f"{total} labelled pixels in {len(table)} classes: {summary}.",
                           "Nothing to do.", {"classes": table}))  # fmt: skip
    absent = [r["name"] for r in table if r["pixels"] == 0]
    if absent:
        out.append(Finding("class_balance", "warning", f"Classes with no labelled pixel on the raster: "
                           f"{', '.join(absent)}.", "Remove these classes or label them where the raster has "
                           "data."))  # fmt: skip
    return out


def check_split(inputs: Inputs, labels, census: Census, val_fraction: float) -> list[Finding]:
    """What the split can honestly hold out: classes without validation pixels or resting on one
    polygon, held-out fractions far from ``val_fraction``, cut polygons and shrunk blocks."""
    if val_fraction <= 0:
        return []
    out: list[Finding] = []
    px = census.class_pixels
    info = getattr(labels, "split_info", None) or {}
    method = labels.split_method
    if census.labelled and px[:, 0].sum() == 0:
        out.append(Finding("split", "error", f"The {method} split leaves no labelled pixel for training (all "
                           f"{census.labelled} are held out), so training would stop with 'no training chips'.",
                           "Lower --val-fraction, label a larger area, or pass a smaller --block-size."))  # fmt: skip
    missing = [c.name for c in labels.classes if px[c.index, 1] == 0 and px[c.index, 0] > 0]
    if missing:
        unit = "polygon" if method == "polygons" else "block"
        out.append(Finding("split", "warning", f"Classes with no validation pixels under the {method} split: "
                           f"{', '.join(missing)} (a class needs at least two {unit}s to be in both train and "
                           "validation).", "Label more polygons of these classes, or use --split blocks with a "
                           "smaller --block-size; their validation scores will be missing.",
                           {"classes": missing}))  # fmt: skip
    if method == "polygons" and info:
        out += _polygon_split_findings(labels, census, val_fraction, info)
    elif method == "blocks" and info:
        out += _block_split_findings(labels, val_fraction, info)
    out += _fraction_findings(labels, census, val_fraction, info, skip=set(missing))
    return out


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.095 or x == 0 else f"{x:.1%}"


def _polygon_split_findings(labels, census: Census, val_fraction: float, info: dict) -> list[Finding]:
    out = []
    names = {c.index: c.name for c in labels.classes}
    polygons, held = info.get("polygons", []), info.get("validation_polygons", [])
    cuts: dict[int, list] = {}
    for cut in info.get("cuts", []):
        cuts.setdefault(cut["class"], []).append(cut)
    for c in labels.classes:
        n = polygons[c.index] if c.index < len(polygons) else 0
        v = held[c.index] if c.index < len(held) else 0
        if v != 1 or census.class_pixels[c.index, 1] == 0:
            continue
        if n == 1:
            text = (f"{c.name} has 1 polygon: held-out estimates for it rest on one polygon, a part of which is "
                    "held out while the rest trains, so its validation pixels touch its training pixels and its "
                    "scores are optimistic.")  # fmt: skip
        else:
            text = f"{c.name} has {n} polygons: held-out estimates for it rest on one polygon."
        need = max(n + 1, math.ceil(2 / val_fraction))
        out.append(Finding("split", "warning", text, f"Draw more polygons of this class in different places: with "
                           f"{need} or more, several whole polygons are held out and none needs cutting.",
                           {"class": c.name, "polygons": n, "validation_polygons": v}))  # fmt: skip
    for index, items in sorted(cuts.items()):
        val_px = sum(i["val_pixels"] for i in items)
        train_px = sum(i["train_pixels"] for i in items)
        what = "its polygon was" if polygons[index] == 1 else "one of its polygons was"
        out.append(Finding("split", "info", f"To hold out about {_pct(val_fraction)} of {names[index]}, {what} cut "
                           f"in two along its longer axis: about {val_px:.0f} px of it are held out and "
                           f"{train_px:.0f} px stay in training.",
                           "Nothing to do: the parts are separate units and validation.gpkg holds the held-out "
                           "part. The parts touch along the cut, so for a cleaner estimate draw more polygons of "
                           "this class in different places.",
                           {"class": names[index], "cut_polygons": len(items), "val_pixels": val_px,
                            "train_pixels": train_px}))  # fmt: skip
    return out


def _block_split_findings(labels, val_fraction: float, info: dict) -> list[Finding]:
    out = []
    size, asked = info.get("block_size"), info.get("requested_block_size")
    n_blocks, n_held = info.get("labelled_blocks"), info.get("held_out_blocks")
    if n_blocks is None:
        return out
    tried = {t["block_size"]: t for t in info.get("tried", [])}
    if size and asked and size < asked:
        before = tried.get(asked, {}).get("labelled_blocks", 0)
        out.append(Finding("split", "info", f"The labelled area where chips can go spans only {before} block"
                           f"{'s' if before != 1 else ''} of {asked} px, too few to hold out about "
                           f"{_pct(val_fraction)} of each class; the blocks split uses {size}-px blocks instead "
                           f"({n_held} of {n_blocks} labelled blocks held out).",
                           "Nothing to do. Smaller blocks put validation pixels nearer to training pixels, so "
                           "scores are somewhat optimistic: label (or mask) a larger area for a more honest "
                           "estimate, or pass --block-size to choose the size yourself.",
                           {"requested_block_size": asked, "block_size": size, "labelled_blocks": n_blocks,
                            "held_out_blocks": n_held}))  # fmt: skip
    if n_held is not None and 0 < n_held < 3:
        out.append(Finding("split", "warning", f"The labelled area spans {n_blocks} block"
                           f"{'s' if n_blocks != 1 else ''} of {size} px: held-out estimates rest on {n_held} "
                           f"block{'s' if n_held != 1 else ''}.",
                           "Label (or mask) a larger area, or pass a smaller --block-size.",
                           {"block_size": size, "labelled_blocks": n_blocks, "held_out_blocks": n_held}))  # fmt: skip
    return out


def _fraction_findings(labels, census: Census, val_fraction: float, info: dict, skip: set) -> list[Finding]:
    """Classes whose held-out share strays far from val_fraction (twice the split's tolerance, which
    pixel rounding and nodata can eat into on small classes), or whose training share is under half."""
    from terralearn.geo.split import MIN_TRAIN_SHARE, split_tolerance

    px = census.class_pixels
    fractions = info.get("fractions")  # blocks: measured where chips can go (inside the mask)
    tol = split_tolerance(val_fraction)
    out = []
    for c in labels.classes:
        total = int(px[c.index].sum())
        if c.name in skip or total < 64:
            continue
        frac = fractions[c.index] if fractions and fractions[c.index] is not None else px[c.index, 1] / total
        if abs(frac - val_fraction) <= 2 * tol and 1 - frac >= MIN_TRAIN_SHARE:
            continue
        text = (f"Under the {labels.split_method} split {_pct(frac)} of {c.name}'s labelled pixels are held out "
                f"for validation (aim {_pct(val_fraction)})")  # fmt: skip
        if 1 - frac < MIN_TRAIN_SHARE:
            text += f": training keeps only {_pct(1 - frac)} of them."
        else:
            text += "."
        fix = ("Draw more polygons of this class in different places." if labels.split_method == "polygons" else
               "Label (or mask) a larger area, or pass a smaller --block-size.")  # fmt: skip
        out.append(Finding("split", "warning", text, fix,
                           {"class": c.name, "held_out_fraction": float(frac), "val_fraction": val_fraction}))  # fmt: skip
    return out


def check_nodata(inputs: Inputs, labels, census: Census) -> list[Finding]:
    """Fraction of nodata in the labelled area; labels that fall on nodata pixels."""
    on = int(census.nodata_labelled.sum())
    total = on + census.labelled
    if on == 0 or total == 0:
        return []
    frac = on / total
    sev = "warning" if frac > 0.01 else "info"
    return [Finding("nodata", sev, f"{on} labelled pixels ({frac:.1%} of the labelled area) fall on raster nodata "
                    "and are left unlabelled in the chips.",
                    "Nothing to do if expected; otherwise check the raster's nodata value (gdalinfo) or clip the "
                    "labels to the data.", {"labelled_on_nodata": on, "fraction": frac})]  # fmt: skip


def check_split_method(labels) -> list[Finding]:
    if labels.split_method == "random":
        return [Finding("split", "warning", "split='random' assigns chip-sized cells at random: neighbouring pixels "
                        "of the same field end up on both sides, so validation scores are optimistic (about 98 % "
                        "where an honest split gives 87 % on typical land-cover data).",
                        "Use --split polygons (default for vector labels) or --split blocks for honest scores.")]  # fmt: skip
    return []


def run_checks(
    config: CheckConfig,
    split: str = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    block_size: int | None = None,
    progress=None,
    stride: tuple[int, int] | None = None,
) -> CheckReport:
    """Run every check on the inputs of an export. File errors raise; everything else is a finding.

    ``stride`` (the chips' stride) lets a blocks split count exactly the area a mask leaves
    for chips; without it every tile position is assumed.
    """
    inputs = load_inputs(config)
    findings = [f for check in STRUCTURAL_CHECKS for f in check(inputs)]
    report = CheckReport(findings, inputs)
    if report.errors:
        return _sorted(report)
    labels = prepare_labels(inputs, split, val_fraction, seed, block_size, stride=stride)
    report.labels = labels
    with RasterStack(config.rasters, config.resampling) as stack:
        census = take_census(stack, labels, progress=progress)
    report.census = census
    findings += check_tile_vs_polygons(inputs, labels)
    findings += check_class_balance(inputs, labels, census)
    findings += check_nodata(inputs, labels, census)
    findings += check_split_method(labels)
    findings += check_split(inputs, labels, census, val_fraction)
    return _sorted(report)


def _sorted(report: CheckReport) -> CheckReport:
    report.findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return report
