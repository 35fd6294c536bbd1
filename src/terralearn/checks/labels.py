"""Checks on the prepared labels and their census: tile size, class balance, nodata, the split."""

from __future__ import annotations

import math

import numpy as np

from terralearn.checks.findings import Finding
from terralearn.geo.tiling import suggest_tile_size
from terralearn.io.inputs import Inputs
from terralearn.labels import Census


def _fmt_len(metres: float, geographic: bool) -> str:
    if geographic:
        return f"{metres:.4g} degrees"
    return f"{metres / 1000:.3g} km" if metres >= 1000 else f"{metres:.3g} m"


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


def check_split(inputs: Inputs, labels, census: Census) -> list[Finding]:
    """What the split can honestly hold out: classes without validation pixels or resting on one
    polygon, held-out fractions far from ``val_fraction``, cut polygons and shrunk blocks."""
    val_fraction = inputs.config.val_fraction
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
