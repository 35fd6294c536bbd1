"""Areas of a pixel grid: km² for progress and summaries, and the units of the CRS for area-adjusted accuracy."""

from __future__ import annotations

import math
from collections.abc import Callable

from rasterio.errors import CRSError

from terralearn.geo.grid import Grid

EARTH_RADIUS_KM = 6371.0072  # the authalic sphere: the WGS 84 ellipsoid's surface area


def area_km2(grid: Grid, rows: float | None = None) -> float | None:
    """The area in km² of the grid's first ``rows`` rows (default: all), for progress and summaries.

    Projected grids: pixels times the pixel area in the CRS's linear units (the map area, like a GIS's).
    Geographic grids (north-up): the area on the authalic sphere between the rows' latitudes, which is
    within 0.5 % of the ellipsoid's. None without a CRS, with unknown linear units or a rotated geographic grid.
    """
    rows = grid.height if rows is None else rows
    if grid.crs is None:
        return None
    if grid.is_geographic:
        if not grid.is_north_up:
            return None
        top = max(-90.0, min(90.0, grid.transform.f))
        bottom = max(-90.0, min(90.0, grid.transform.f + rows * grid.transform.e))
        zone = abs(math.sin(math.radians(top)) - math.sin(math.radians(bottom)))
        return EARTH_RADIUS_KM**2 * math.radians(min(360.0, grid.width * abs(grid.transform.a))) * zone
    try:
        metres = grid.crs.linear_units_factor[1]
    except CRSError:
        return None
    return rows * grid.width * grid.pixel_area * metres**2 / 1e6


def area_progress(grid: Grid) -> Callable[[int, int], str]:
    """A progress text: km² done / total, from the pixels done (whole rows from the top).

    Geographic grids get an approximate area (marked ≈); a grid without a CRS or with unknown units says why
    it shows pixels only.
    """
    total = area_km2(grid)
    if total is None:
        reason = "the raster has no CRS" if grid.crs is None else "its CRS has no known units"
        return lambda done, pixels: f"(pixels only: {reason})"
    approx = "≈" if grid.is_geographic else ""
    digits = 0 if total >= 100 else 1 if total >= 1 else 3

    def text(done: int, pixels: int) -> str:
        km2 = area_km2(grid, done / max(grid.width, 1)) or 0.0
        return f"{approx}{km2:,.{digits}f}/{total:,.{digits}f} km²"

    return text


def area_units(grid: Grid) -> dict:
    """Pixel size and area, the CRS's linear unit, and square metres per square map unit (None if not linear)."""
    unit, factor = None, None
    if grid.crs is not None and grid.crs.is_projected:
        try:
            unit, factor = grid.crs.linear_units_factor
        except CRSError:  # pragma: no cover - projected CRS always has linear units
            unit, factor = None, None
    epsg = grid.crs.to_epsg() if grid.crs is not None else None
    return {
        "crs": f"EPSG:{epsg}" if epsg else (grid.crs.to_wkt() if grid.crs is not None else None),
        "pixel_size": list(grid.res),
        "pixel_area": grid.pixel_area,
        "unit": unit or ("degree" if grid.is_geographic else None),
        "m2_per_unit2": None if factor is None else factor**2,
        "pixel_area_m2": None if factor is None else grid.pixel_area * factor**2,
        "width": grid.width,
        "height": grid.height,
    }
