"""Reading and writing vector layers with geopandas/pyogrio."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from terralearn.errors import InputFileError
from terralearn.io.atomic import atomic_file

#: Suffixes of the vector layers the reader takes (a .zip holds a shapefile); the one list of them.
VECTOR_SUFFIXES = frozenset({".gpkg", ".shp", ".geojson", ".json", ".fgb", ".kml", ".gml", ".sqlite", ".zip"})


def is_vector_path(path: Path) -> bool:
    """Whether a labels path names a vector layer (by suffix) rather than a raster."""
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def read_vector(path: Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer; missing or unreadable files become an InputFileError."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"Vector file '{path}' does not exist.",
            "Check the path and file name (a shapefile needs its .shp, .shx, .dbf and .prj side by side).",
        )
    try:
        source = f"zip://{path}" if path.suffix.lower() == ".zip" else path
        return gpd.read_file(source, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio raises several error types for unreadable data
        raise unreadable_vector(path, exc) from None


def unreadable_vector(path: Path, exc: Exception) -> InputFileError:
    """The error for a vector file GDAL/OGR cannot read, quoting its first line."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return InputFileError(
        f"'{path}' could not be read as a vector layer ({first}).",
        "Give a GeoPackage, shapefile (with its .shx/.dbf/.prj) or GeoJSON file; if it is one, it may be "
        "truncated or corrupt: export it again from your GIS.",
    )


def write_vector(gdf: gpd.GeoDataFrame, path: Path, layer: str | None = None) -> None:
    """Write a layer atomically (GeoPackage by default)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        gdf.to_file(tmp, layer=layer or path.stem, driver="GPKG" if path.suffix == ".gpkg" else None, engine="pyogrio")
