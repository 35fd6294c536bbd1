"""Reading and writing rasters with rasterio/GDAL, window by window."""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from terralearn.errors import InputFileError, RasterError
from terralearn.geo.grid import Grid, bounds_intersection
from terralearn.io.atomic import atomic_file


@dataclass(frozen=True)
class RasterInfo:
    """What a raster file holds, read from its header only."""

    path: Path
    grid: Grid
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    band_names: tuple[str, ...]
    driver: str
    has_mask: bool = False
    descriptions: tuple[str | None, ...] = field(default=())

    @property
    def dtype(self) -> str:
        return str(np.result_type(*self.dtypes))


def open_raster(path: Path):
    """Open a raster for reading, turning GDAL's errors into a plain-words InputFileError."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"Raster file '{path}' does not exist.",
            "Check the path (relative paths start from the current folder) and the file name.",
        )
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputFileError(
            f"'{path}' is not a readable raster ({_short(exc)}).",
            "Give a GeoTIFF or another raster format GDAL reads; if it is one, the file may be truncated or "
            "corrupt: copy or export it again.",
        ) from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _band_names(src, stem: str) -> tuple[str, ...]:
    if src.count == 1:
        return (src.descriptions[0] or stem,)
    return tuple(desc or f"{stem}_b{i}" for i, desc in enumerate(src.descriptions, start=1))


def grid_of(src) -> Grid:
    return Grid(src.crs, src.transform, src.width, src.height)


def describe_raster(path: Path) -> RasterInfo:
    with open_raster(path) as src:
        has_mask = any(
            MaskFlags.per_dataset in flags and MaskFlags.nodata not in flags for flags in src.mask_flag_enums
        )
        return RasterInfo(
            path=Path(path),
            grid=grid_of(src),
            count=src.count,
            dtypes=tuple(src.dtypes),
            nodata=src.nodata,
            band_names=_band_names(src, Path(path).stem),
            driver=src.driver,
            has_mask=has_mask,
            descriptions=tuple(src.descriptions),
        )


def file_checksum(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (memory does not grow with file size)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def auto_resampling(info: RasterInfo, target: Grid) -> str:
    """'average' when the raster's pixels are finer than the target grid's, else 'bilinear'."""
    if info.grid.crs is None or target.crs is None:
        return "bilinear"
    left, bottom, right, top = transform_bounds(info.grid.crs, target.crs, *info.grid.bounds)
    src_res = min((right - left) / info.grid.width, (top - bottom) / info.grid.height)
    return "average" if src_res < 0.999 * min(target.res) else "bilinear"


def stack_nodata(dtype: np.dtype, declared: float | None):
    """The nodata value chips of this dtype carry: NaN for floats, else the declared or an extreme value."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return float("nan")
    info = np.iinfo(dtype)
    usable = declared is not None and np.isfinite(declared) and float(declared).is_integer()
    if usable and info.min <= declared <= info.max:
        return int(declared)
    return int(info.min) if info.min < 0 else int(info.max)


def footprint_in(info: RasterInfo, crs) -> tuple[float, float, float, float]:
    if info.grid.crs is None or crs is None or info.grid.crs == crs:
        return info.grid.bounds
    return transform_bounds(info.grid.crs, crs, *info.grid.bounds, densify_pts=21)


class RasterStack:
    """Several rasters read as one stack of bands on the grid of the first.

    Rasters on another grid (CRS, pixel size or extent) are warped on the fly through
    GDAL's WarpedVRT, window by window: nothing is read before it is asked for.
    ``read(window)`` returns the bands and a validity mask (False where any band is nodata,
    masked, NaN, or outside the raster's own footprint).
    """

    def __init__(self, paths: list[Path], resampling: list[str] | None = None) -> None:
        self.infos = [describe_raster(p) for p in paths]
        self.grid = self.infos[0].grid
        resampling = resampling or ["auto"]
        self.resampling: list[str] = []
        self._stack = contextlib.ExitStack()
        self._sources = []
        try:
            for i, info in enumerate(self.infos):
                method = resampling[0] if len(resampling) == 1 else resampling[i]
                if method == "auto":
                    method = "nearest" if info.grid.same_as(self.grid) else auto_resampling(info, self.grid)
                self.resampling.append(method)
                self._sources.append(self._open_on_grid(info, method))
            self._masked = [
                _needs_masked_read(src, info.count) for src, info in zip(self._sources, self.infos, strict=True)
            ]
        except BaseException:
            self._stack.close()
            raise
        self.band_names = [name for info in self.infos for name in info.band_names]
        #: Whether each band's name comes from the file's band description (else it was made from the file name).
        self.described = [bool(d) for info in self.infos for d in (info.descriptions or [None] * info.count)]
        self.count = len(self.band_names)
        self.dtype = np.result_type(*[d for info in self.infos for d in info.dtypes])
        self.nodata = stack_nodata(self.dtype, self.infos[0].nodata)

    def _open_on_grid(self, info: RasterInfo, method: str):
        src = self._stack.enter_context(open_raster(info.path))
        if info.grid.same_as(self.grid):
            return src
        if info.grid.crs is None or self.grid.crs is None:
            raise RasterError(
                f"'{info.path}' and '{self.infos[0].path}' are on different grids and one has no CRS, so they "
                "cannot be aligned.",
                "Assign the missing CRS (e.g. gdal_edit.py -a_srs EPSG:XXXX FILE) and try again.",
            )
        if bounds_intersection(footprint_in(info, self.grid.crs), self.grid.bounds) is None:
            raise RasterError(
                f"'{info.path}' does not overlap '{self.infos[0].path}' (the first raster, whose grid the stack uses).",
                "Stack rasters that cover the same area, or put the raster that defines the area first.",
            )
        kwargs = dict(
            crs=self.grid.crs,
            transform=self.grid.transform,
            width=self.grid.width,
            height=self.grid.height,
            resampling=Resampling[method],
        )
        if src.nodata is not None:
            kwargs.update(src_nodata=src.nodata, nodata=src.nodata)
        else:
            kwargs.update(add_alpha=True)
        return self._stack.enter_context(WarpedVRT(src, **kwargs))

    def __enter__(self) -> RasterStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def strip_cache_bytes(self, rows: int) -> int:
        """The GDAL block cache with which full-width reads of ``rows`` rows, sliding down, decode each block once.

        Every band's blocks over ``rows`` rows plus one row of blocks (a strip starts inside a row of blocks
        that the previous strip decoded); twice that for a warped raster (the VRT's blocks and its source's).
        """
        total = 0
        for src, info in zip(self._sources, self.infos, strict=True):
            block_rows = max(int(src.block_shapes[0][0]), 1) if src.count else 1
            span = (math.ceil(rows / block_rows) + 1) * block_rows
            itemsize = max(np.dtype(d).itemsize for d in info.dtypes)
            copies = 1 if info.grid.same_as(self.grid) else 2
            total += copies * span * self.grid.width * info.count * itemsize
        return total

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        h, w = int(window.height), int(window.width)
        data = np.empty((self.count, h, w), dtype=self.dtype)
        valid = np.ones((h, w), dtype=bool)
        b = 0
        for info, src, masked in zip(self.infos, self._sources, self._masked, strict=True):
            indexes = list(range(1, info.count + 1))
            if src.count > info.count:  # a WarpedVRT with an alpha band marking the raster's own footprint
                valid &= src.read(src.count, window=window) > 0
            if masked:
                arr = src.read(indexes=indexes, window=window, masked=True)
                valid &= ~np.ma.getmaskarray(arr).any(axis=0)
                raw = arr.data
            else:  # the only mask is a nodata value: comparing is several times faster than a masked read
                same = all(np.dtype(d) == data.dtype for d in src.dtypes[: info.count])
                raw = src.read(indexes=indexes, window=window, out=data[b : b + info.count] if same else None)
                if src.nodata is not None and not np.isnan(src.nodata):
                    valid &= ~(raw == src.nodata).any(axis=0)
            if np.issubdtype(raw.dtype, np.floating):
                valid &= ~np.isnan(raw).any(axis=0)
            if raw.base is not data:  # not read in place
                data[b : b + info.count] = raw
            b += info.count
        if not valid.all():
            data[:, ~valid] = self.nodata
        return data, valid


def _needs_masked_read(src, count: int) -> bool:
    """True when a dataset's bands have a real mask (mask band, alpha), not just a nodata value or none."""
    allowed = ({MaskFlags.all_valid}, {MaskFlags.nodata})
    return any(set(flags) not in allowed for flags in src.mask_flag_enums[:count])


class LabelRaster:
    """A classified raster read on the stack's grid (nearest neighbour), window by window."""

    def __init__(self, path: Path, grid: Grid, unlabelled: float | None) -> None:
        self.info = describe_raster(path)
        if self.info.count != 1:
            raise RasterError(
                f"The label raster '{path}' has {self.info.count} bands; a classified raster has one.",
                "Give a single-band raster of class values (extract the band with gdal_translate -b N).",
            )
        dtype = np.dtype(self.info.dtypes[0])
        if np.issubdtype(dtype, np.floating):
            pass  # checked per value: non-integral class values are refused by the checks
        self.unlabelled = (
            unlabelled if unlabelled is not None else (self.info.nodata if self.info.nodata is not None else 0)
        )
        self._stack = contextlib.ExitStack()
        src = self._stack.enter_context(open_raster(path))
        if self.info.grid.same_as(grid):
            self._src = src
        else:
            if self.info.grid.crs is None or grid.crs is None:
                raise RasterError(
                    f"The label raster '{path}' is on another grid than the image and one has no CRS.",
                    "Assign the missing CRS (gdal_edit.py -a_srs EPSG:XXXX FILE).",
                )
            if bounds_intersection(footprint_in(self.info, grid.crs), grid.bounds) is None:
                raise RasterError(
                    f"The label raster '{path}' does not overlap the image raster.",
                    "Use labels that cover the same area as the image.",
                )
            self._src = self._stack.enter_context(
                WarpedVRT(
                    src,
                    crs=grid.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.nearest,
                    src_nodata=self.info.nodata,
                    nodata=self.unlabelled,
                )
            )

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Return (values, labelled) for the window."""
        arr = self._src.read(1, window=window, masked=True)
        values = arr.data
        labelled = ~np.ma.getmaskarray(arr) & (values != self.unlabelled)
        if np.issubdtype(values.dtype, np.floating):
            labelled &= ~np.isnan(values)
        return values, labelled

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> LabelRaster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def gdal_env(cache_bytes: int) -> rasterio.Env:
    """A GDAL environment whose block cache holds ``cache_bytes`` (GDAL's default is 5 % of RAM)."""
    return rasterio.Env(GDAL_CACHEMAX=int(cache_bytes))


def write_raster(
    path: Path,
    data: np.ndarray,
    grid: Grid,
    nodata: float | None = None,
    band_names: list[str] | None = None,
    colormap: dict | None = None,
) -> None:
    """Write a (bands, rows, cols) array as a tiled, deflate-compressed GeoTIFF, atomically."""
    if data.ndim == 2:
        data = data[None]
    profile = dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=data.shape[0],
        dtype=data.dtype,
        crs=grid.crs,
        transform=grid.transform,
        nodata=nodata,
        compress="deflate",
        tiled=grid.width >= 256 and grid.height >= 256,
    )
    if profile["tiled"]:
        profile.update(blockxsize=256, blockysize=256)
    with atomic_file(Path(path)) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(band_names or [], start=1):
            dst.set_band_description(i, name)
        if colormap:
            dst.write_colormap(1, colormap)


#: Dataset tag of a classified map holding its class table (JSON list of index/value/name/colour).
CLASS_TABLE_TAG = "TERRALEARN_CLASSES"
#: Dataset tag of a classified map holding the number of the training run whose model made it.
RUN_TAG = "TERRALEARN_RUN"


def read_map_run(path: Path) -> int | None:
    """The training run number recorded in a map written by `terralearn classify`, if any."""
    with open_raster(path) as src:
        value = src.tags().get(RUN_TAG)
    return int(value) if value and value.isdigit() else None


def read_class_table(path: Path) -> list[dict] | None:
    """The class table of a map written by `terralearn classify` (None for other rasters)."""
    import json

    with open_raster(path) as src:
        text = src.tags().get(CLASS_TABLE_TAG)
    if not text:
        return None
    try:
        table = json.loads(text)
    except json.JSONDecodeError:
        return None
    return table if isinstance(table, list) else None


def read_instance_ids(path: Path) -> tuple[np.ndarray, object, object]:
    """``(ids, transform, crs)`` of an instance-ID raster's first band: int32, nodata and 0 meaning no object.

    The band is read whole: instance rasters are label layers, digitised or rasterised from footprints, not
    imagery; a raster of more than 2**28 pixels is refused with the fix.
    """
    with open_raster(path) as src:
        if src.width * src.height > 2**28:
            raise RasterError(f"The instance raster '{path}' has {src.width} x {src.height} pixels, too many to "
                              "vectorise at once.", "Give the footprints as polygons (gdal_polygonize.py) instead.")  # fmt: skip
        if np.dtype(src.dtypes[0]).kind == "f":
            raise RasterError(f"The instance raster '{path}' holds {src.dtypes[0]} values; instance IDs are "
                              "whole numbers.", "Write the IDs as an integer band (e.g. gdal_translate -ot UInt32).")  # fmt: skip
        data = src.read(1, masked=True)
        ids = np.where(np.ma.getmaskarray(data), 0, np.ma.getdata(data)).astype(np.int64)
        if (ids < 0).any() or ids.max(initial=0) > np.iinfo(np.int32).max:
            raise RasterError(f"The instance raster '{path}' holds IDs outside 0 .. 2**31.",
                              "Renumber the instances from 1.")  # fmt: skip
        return ids.astype(np.int32), src.transform, src.crs
