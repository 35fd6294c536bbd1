"""Checks on the inputs as read, before any repair: rasters, label layer, class field, geometries, overlap."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import shapely

from terralearn.checks.findings import Finding
from terralearn.classes import normalise_values
from terralearn.errors import LabelError
from terralearn.geo.grid import bounds_intersection
from terralearn.geo.tiling import suggest_tile_size
from terralearn.io.inputs import Inputs
from terralearn.io.raster import auto_resampling, footprint_in

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
