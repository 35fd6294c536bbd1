"""Stage 3: a model package + raster(s) -> a classified map, streamed strip by strip.

The raster is cut into overlapping tiles on a stride grid. Tile predictions (class
probabilities) are weighted by a 2-D Hann window and accumulated, so overlapping tiles
blend without seams. Rows of the map are final as soon as no later tile row covers them:
they are written then and dropped from memory. Peak memory therefore depends on the tile
size, the batch size and the raster width, never on its height. A reader thread prepares
the next strip's tiles, normalised and batched (full batches, across tile rows), while the
model runs, and a writer thread writes finished rows; the model's weights load in a thread
while the first strip is read.

The result is a validated Cloud-Optimized GeoTIFF on the input grid (uint8 class indices,
255 = nodata) with a colour table, the class table (original values and names) as a tag,
a raster attribute table side-car and a QGIS style; optionally a probability map.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
import torch
from rasterio.features import rasterize
from rasterio.windows import Window

from terralearn.classes import hex_to_rgba
from terralearn.config import ClassifyConfig
from terralearn.errors import PackageError, RasterError
from terralearn.geo.areas import area_km2
from terralearn.geo.blend import hann_weights
from terralearn.geo.tiling import tile_starts
from terralearn.io.atomic import ensure_can_write_dir
from terralearn.io.maps import (
    NODATA,
    StripWriter,
    class_tags,
    to_cog,
    validate_cog,
    write_attribute_table,
    write_qml,
)
from terralearn.io.package import read_card
from terralearn.io.raster import RUN_TAG, RasterStack
from terralearn.io.vector import read_vector
from terralearn.models.device import resolve_device
from terralearn.models.forest import predict_proba
from terralearn.models.segmentation import MULTIPLE
from terralearn.predict.loader import LoadedModel, load_model

Progress = Callable[[int, int], None]


@dataclass
class ClassifyResult:
    out: Path
    qml: Path
    attribute_table: Path
    probability: Path | None
    seconds: float
    pixels: int
    area_km2: float | None
    class_pixels: list[int]
    warnings: list[str] = field(default_factory=list)
    cog_valid: bool = True


class Predictor:
    """Class probabilities (B, K, H, W) of normalised tiles (B, C, H, W), with any backend."""

    def __init__(self, loaded: LoadedModel, config: ClassifyConfig, tile_hw: tuple[int, int], tmp: Path) -> None:
        self.loaded = loaded
        self.tta = config.tta
        self.session = None
        self.device = torch.device("cpu")
        self.half = False
        if loaded.forest is not None:
            return
        if config.backend == "onnx":
            import onnxruntime as ort

            from terralearn.predict.onnx import cached_onnx

            self.padded = tuple(math.ceil(v / MULTIPLE) * MULTIPLE for v in tile_hw)
            model = cached_onnx(config.model, loaded.card, self.padded, fallback=tmp / "model.onnx")
            options = ort.SessionOptions()
            # Idle ONNX Runtime threads sleep instead of spinning: the reader and writer threads get the cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            return
        self.device = resolve_device(config.device)
        self.half = self.device.type == "cuda"
        self.net = loaded.network.to(self.device).eval()
        if self.half:
            self.net = self.net.half()

    def _onnx_logits(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        ph, pw = self.padded[0] - h, self.padded[1] - w
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        return self.session.run(None, {"image": x})[0][..., :h, :w]

    def _proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, float32, in a new array the caller may change in place."""
        if self.loaded.forest is not None:
            b, c, h, w = x.shape
            pixels = np.moveaxis(x, 1, -1).reshape(-1, c)
            p = predict_proba(self.loaded.forest, pixels)
            return np.ascontiguousarray(np.moveaxis(p.reshape(b, h, w, -1), -1, 1), dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        with torch.inference_mode():  # softmax in torch for every backend: one fused, multi-threaded pass
            if self.session is not None:
                logits = torch.from_numpy(self._onnx_logits(x))
            else:
                t = torch.from_numpy(x).to(self.device)
                logits = self.net(t.half() if self.half else t).float()
            return torch.softmax(logits, dim=1).cpu().numpy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.tta:
            return self._proba(x)
        total = np.zeros((x.shape[0], self.loaded.n_classes, *x.shape[-2:]), dtype=np.float32)
        views = _dihedral_views(square=x.shape[-1] == x.shape[-2])
        for forward, inverse in views:
            total += inverse(self._proba(np.ascontiguousarray(forward(x))))
        total /= len(views)
        return total


def _dihedral_views(square: bool):
    """(transform, inverse) pairs on the last two axes: 8 flips and rotations, or 4 flips for non-square tiles."""
    flips = [(False, False), (False, True), (True, False), (True, True)]

    def flip(rows: bool, cols: bool):
        axes = tuple(a for a, on in ((-2, rows), (-1, cols)) if on)
        return (lambda a: np.flip(a, axes)) if axes else (lambda a: a)

    views = [(flip(r, c), flip(r, c)) for r, c in flips]
    if square:
        views += [(lambda a, k=k: np.rot90(a, k, axes=(-2, -1)), lambda a, k=k: np.rot90(a, -k, axes=(-2, -1)))
                  for k in (1, 3)]  # fmt: skip
        views += [(lambda a: np.flip(np.rot90(a, 1, axes=(-2, -1)), -1),
                   lambda a: np.rot90(np.flip(a, -1), -1, axes=(-2, -1))),
                  (lambda a: np.flip(np.rot90(a, 1, axes=(-2, -1)), -2),
                   lambda a: np.rot90(np.flip(a, -2), -1, axes=(-2, -1)))]  # fmt: skip
    return views


def check_bands(card: dict, stack: RasterStack, config: ClassifyConfig) -> None:
    expected, got = list(card["bands"]), list(stack.band_names)
    if len(expected) != len(got):
        raise RasterError(
            f"The model was trained on {len(expected)} bands {expected}; the rasters given have {len(got)} bands "
            f"{got}.",
            "Pass the same rasters as at export, in the same order (--raster A --raster B ...).",
        )
    # Names made up from file names (scene_b1, ...) say nothing about the band: only real band descriptions count.
    clash = [i for i, (e, g) in enumerate(zip(expected, got, strict=True))
             if e != g and stack.described[i] and not re.search(r"_b\d+$", e)]  # fmt: skip
    if clash and config.check_band_names:
        raise RasterError(
            f"The band names differ from the model's: trained on {expected}, given {got}.",
            "Pass the rasters in the training order; if only the file names changed, add --ignore-band-names.",
        )


COG_CACHE_BYTES = 32 * 2**20  # GDAL's block cache while the map becomes a COG: it reads and writes blocks in turn


def gdal_cache_bytes(stack: RasterStack, tile_height: int) -> int:
    """GDAL's block cache for a streamed pass: the blocks one strip of tiles touches, not 5 % of RAM.

    GDAL's default keeps every decompressed input block up to 5 % of RAM, so memory would grow with the
    raster up to that size; a strip reader needs the blocks under one strip plus the row of blocks that
    the next strip starts in (read again, not decoded again), and the blocks of the map being written.
    rasterio takes GDAL_CACHEMAX in bytes.
    """
    need = stack.strip_cache_bytes(tile_height) + 2 * tile_height * stack.grid.width
    return int(min(2**30, max(16 * 2**20, 1.25 * need)))


def default_tile(card: dict) -> int:
    """The card's tile size if it names one, else the training chip size: a network trained on whole chips sees
    the same context (and the same borders) as in training.

    Measured on the Landsat sample: a U-Net trained on 32-px chips scores 96.5 % on the labelled
    pixels with 32-px tiles, 79 % with 64-px tiles and 12 % with 256-px tiles.
    """
    if card.get("tile_size"):  # a model trained on crops of many sizes (``--model auto``) says what suits it
        return int(card["tile_size"])
    return max(int(v) for v in card["chip_size"])


def classify(config: ClassifyConfig, progress: Progress | None = None) -> ClassifyResult:
    """Classify the whole raster into ``config.out``; see the module documentation."""
    t0 = time.perf_counter()
    out = Path(config.out)
    if out.exists() and not config.overwrite:
        from terralearn.errors import OutputExistsError

        raise OutputExistsError(f"The output '{out}' already exists.", "Choose another --out or pass --overwrite.")
    ensure_can_write_dir(out.parent, overwrite=True)
    warnings: list[str] = []
    # The weights load and are checked in a thread while the rasters open and the first strip is read.
    card = read_card(config.model)
    with contextlib.ExitStack() as context:
        loader = context.enter_context(ThreadPoolExecutor(1, thread_name_prefix="model-loader"))
        loading = loader.submit(load_model, config.model)
        stack = context.enter_context(RasterStack(config.rasters, config.resampling))
        grid = stack.grid
        if grid.is_rotated or grid.is_south_up:
            raise RasterError(
                f"'{config.rasters[0]}' has a {'rotated' if grid.is_rotated else 'south-up'} grid.",
                "Warp it to a north-up grid first: gdalwarp IN OUT.",
            )
        check_bands(card, stack, config)
        trained = card.get("pixel_size") or grid.res
        if abs(grid.res[0] - trained[0]) > 0.01 * trained[0]:
            warnings.append(
                f"The raster's pixels are {grid.res[0]:.4g} units, the model was trained on {trained[0]:.4g}: "
                "objects look larger or smaller than in training. Resample the raster to the training pixel size "
                "(gdalwarp -tr) for best results."
            )
        tile = config.tile_size or default_tile(card)
        th, tw = min(tile, grid.height), min(tile, grid.width)
        overlap = tile // 4 if config.overlap is None else config.overlap
        sy, sx = max(1, th - min(overlap, th - 1)), max(1, tw - min(overlap, tw - 1))
        rows, cols = tile_starts(grid.height, th, sy), tile_starts(grid.width, tw, sx)
        classes = card["classes"]
        k = len(classes)
        mean = np.asarray(card["normalisation"]["mean"], np.float32)[:, None, None]
        std = np.asarray(card["normalisation"]["std"], np.float32)[:, None, None]
        weights = hann_weights(th, tw)
        suppress = [c["index"] for c in classes if c["name"] == "background"] if not config.predict_background else []
        aoi = _aoi(config, grid)
        with tempfile.TemporaryDirectory(prefix=".terralearn-", dir=out.parent) as tmp_name:
            tmp = Path(tmp_name)
            with (
                rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(stack, th)),
                _TileReader(stack, rows, cols, th, tw, mean, std, config.batch_size) as strips,
            ):
                loaded = loading.result()
                if loaded.card != card:
                    raise PackageError(f"The model package '{config.model}' changed while it was read.", "Run again.")
                predictor = Predictor(loaded, config, (th, tw), tmp)
                colormap = {c["index"]: hex_to_rgba(c["colour"]) for c in classes}
                tags = {**class_tags(classes), **({RUN_TAG: str(card["run_id"])} if card.get("run_id") else {})}
                writer = StripWriter(tmp / "map.tif", grid, colormap=colormap, tags=tags)
                prob_writer = (
                    StripWriter(tmp / "prob.tif", grid, description="probability (%)") if config.probabilities else None
                )
                counts = np.zeros(k, dtype=np.int64)
                try:
                    _run(strips, grid, rows, cols, weights, sy, predictor, k, suppress, aoi, writer, prob_writer,
                         counts, progress)  # fmt: skip
                finally:
                    writer.close()
                    if prob_writer:
                        prob_writer.close()
            prob_path = out.with_name(out.stem + "_probability.tif") if prob_writer else None
            with rasterio.Env(GDAL_CACHEMAX=COG_CACHE_BYTES):  # the input's blocks are dropped
                to_cog(tmp / "map.tif", out)
                if prob_path:
                    to_cog(tmp / "prob.tif", prob_path, resampling="AVERAGE")
    valid, errors = validate_cog(out)
    if not valid:  # pragma: no cover - GDAL's COG driver writes valid COGs
        warnings.append(f"The output is not a valid COG: {errors}")
    aux = write_attribute_table(out, classes)
    qml = write_qml(out, classes)
    return ClassifyResult(out, qml, aux, prob_path, time.perf_counter() - t0, grid.width * grid.height,
                          area_km2(grid), counts.tolist(), warnings, valid)  # fmt: skip


def _aoi(config: ClassifyConfig, grid):
    if config.aoi is None:
        return None
    gdf = read_vector(config.aoi)
    if gdf.crs is not None and grid.crs is not None and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    geom = shapely.union_all(shapely.make_valid(gdf.geometry.dropna().to_numpy()))
    if geom.is_empty or not geom.intersects(shapely.box(*grid.bounds)):
        raise RasterError(f"The area of interest '{config.aoi}' does not overlap the raster.",
                          "Give polygons that cover part of the raster.")  # fmt: skip
    return geom


class _TileReader:
    """The tiles, read strip by strip in a background thread one strip ahead, normalised into batches.

    Batches are full across strips, in row-major order: the tiles a model fed from memory would get.
    Iterating yields, per tile row, ``(valid, batches)``: the strip's (th, width) validity mask and the
    batches completed by its tiles, each ``(tiles, keys)`` with (B, C, th, tw) float32 tiles and their
    (strip index, column index); the last strip also yields the last, partial batch.
    """

    def __init__(self, stack, rows, cols, th, tw, mean, std, batch_size) -> None:  # fmt: skip
        self.stack, self.rows, self.cols, self.th, self.tw = stack, rows, cols.tolist(), th, tw
        self.mean, self.std, self.batch_size = mean, std, batch_size
        self.batch, self.keys = None, []  # the batch being filled (only the reader thread touches them)

    def __enter__(self) -> _TileReader:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="strip-reader")
        self.next = self.pool.submit(self._read, 0)  # starts at once
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __iter__(self):
        for i in range(len(self.rows)):
            strip = self.next.result()
            if i + 1 < len(self.rows):
                self.next = self.pool.submit(self._read, i + 1)
            yield strip

    def _read(self, i: int):
        th, tw = self.th, self.tw
        data, valid = self.stack.read(Window(0, int(self.rows[i]), self.stack.grid.width, th))
        done = []
        for j, c in enumerate(self.cols):
            if self.batch is None:
                self.batch = np.empty((self.batch_size, data.shape[0], th, tw), dtype=np.float32)
            tile = self.batch[len(self.keys)]
            np.subtract(data[:, :, c : c + tw], self.mean, out=tile)  # (x - mean) / std in float32
            np.divide(tile, self.std, out=tile)
            inside = valid[:, c : c + tw]
            if not inside.all():
                tile[:, ~inside] = 0.0
            self.keys.append((i, j))
            if len(self.keys) == self.batch_size:
                done.append((self.batch, self.keys))
                self.batch, self.keys = None, []
        if i + 1 == len(self.rows) and self.keys:
            done.append((self.batch[: len(self.keys)], self.keys))
        return valid, done


class _Mosaic:
    """Weighted sums of class probabilities (and of weights) over a band of rows that slides down the map.

    ``acc[:, base + y]`` holds row ``top + y``. Tiles add to rows, which are taken from the top once final;
    the rows held move to the start of the buffer only when the band reaches its end. The buffer holds a
    tile row and one stride (a batch reaching into the next tile row), taller only for narrow rasters whose
    batches reach several tile rows down.
    """

    def __init__(self, k: int, th: int, sy: int, width: int, weights: np.ndarray, with_weights: bool) -> None:
        self.k, self.width, self.th = k, width, th
        self.weights = torch.from_numpy(weights)
        self.top = self.base = self.used = 0  # first row held, its buffer row, rows held (below: zero)
        self._allocate(th + sy, with_weights)

    def _allocate(self, height: int, with_weights: bool) -> None:
        self.acc = np.zeros((self.k, height, self.width), dtype=np.float32)
        self.wsum = np.zeros((height, self.width), dtype=np.float32) if with_weights else None
        self._acc_t = torch.from_numpy(self.acc)
        self._wsum_t = torch.from_numpy(self.wsum) if with_weights else None

    def add(self, proba: np.ndarray, r: int, c: int) -> None:
        """Add one tile's (k, th, tw) probabilities times the blending weights at row ``r``, column ``c``."""
        th, tw = self.weights.shape
        y = r - self.top
        if self.base + y + th > self.acc.shape[1]:
            self._make_room(y + th)
        y += self.base
        self._acc_t[:, y : y + th, c : c + tw].addcmul_(torch.from_numpy(proba), self.weights)
        if self._wsum_t is not None:
            self._wsum_t[y : y + th, c : c + tw] += self.weights
        self.used = max(self.used, r - self.top + th)

    def _make_room(self, rows: int) -> None:
        old_acc, old_wsum, base, used = self.acc, self.wsum, self.base, self.used
        if rows > old_acc.shape[1]:  # a batch reaching several strips down (narrow rasters): a taller buffer
            self._allocate(rows + self.th, old_wsum is not None)
        # rows from base + used on are zero: move the rows held to the start and zero the rest of the old ones
        self.acc[:, :used] = old_acc[:, base : base + used]
        self.acc[:, used : base + used] = 0.0
        if old_wsum is not None:
            self.wsum[:used] = old_wsum[base : base + used]
            self.wsum[used : base + used] = 0.0
        self.base = 0

    def take(self, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The next ``rows`` rows from the top (views, valid until the next ``add``) and their weight sums."""
        band = self.acc[:, self.base : self.base + rows]
        wsum = self.wsum[self.base : self.base + rows] if self.wsum is not None else None
        self.top, self.base, self.used = self.top + rows, self.base + rows, max(0, self.used - rows)
        return band, wsum


def _run(strips, grid, rows, cols, weights, sy, predictor, k, suppress, aoi, writer, prob_writer, counts,
         progress) -> None:  # fmt: skip
    """Stream the tiles: read (thread) -> predict in batches -> blend -> finished rows -> write (thread).

    Strip ``i`` covers the rows ``rows[i] .. rows[i] + th``; once all its tiles are blended, the rows above
    ``rows[i + 1]`` are final: they are classified and written, and leave the mosaic.
    """
    th, tw = weights.shape
    width = grid.width
    allowed = [c for c in range(k) if c not in suppress] or list(range(k))
    mosaic = _Mosaic(k, th, sy, width, weights, with_weights=prob_writer is not None)
    done = finished = 0  # pixels written, strips written
    blended = [0] * len(rows)  # tiles blended per strip
    valids: dict[int, np.ndarray] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="map-writer") as out_pool:
        pending_writes = []
        for i, (valid, batches) in enumerate(strips):
            valids[i] = valid
            for tiles, keys in batches:
                proba = predictor(tiles)
                for p, (s, j) in zip(proba, keys, strict=True):
                    mosaic.add(p, int(rows[s]), int(cols[j]))
                    blended[s] += 1
                while finished < len(rows) and blended[finished] == len(cols):
                    r = mosaic.top
                    final = int(rows[finished + 1]) - r if finished + 1 < len(rows) else grid.height - r
                    band, wsum = mosaic.take(final)
                    labels, best = _winners(band, allowed)
                    ok = valids.pop(finished)[:final]
                    if aoi is not None:
                        ok = ok & _inside(aoi, grid, r, final)
                    labels[~ok] = NODATA
                    counts += np.bincount(labels.ravel(), minlength=NODATA + 1)[:k]
                    pending_writes.append(out_pool.submit(writer.write, r, labels))
                    if prob_writer:
                        prob = np.round(best / np.maximum(wsum, 1e-12) * 100).astype(np.uint8)
                        prob[~ok] = NODATA
                        pending_writes.append(out_pool.submit(prob_writer.write, r, prob))
                    finished += 1
                    done += final * width
                    if progress:
                        progress(done, grid.width * grid.height)
                while len(pending_writes) > 4:
                    pending_writes.pop(0).result()
        for f in pending_writes:
            f.result()


def _winners(block: np.ndarray, allowed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The winning class of every pixel among ``allowed`` (the first on ties, as argmax) and its weighted sum.

    With some classes left out, a running maximum over the allowed class planes (faster than numpy's argmax,
    which reduces the class axis with the stride of a whole plane). The sums are not divided by the weight
    sum: it is positive, so it does not change the winner.
    """
    if len(allowed) == block.shape[0]:  # torch's max: multi-threaded, and the first index on ties, as argmax
        best, labels = torch.max(torch.from_numpy(block), dim=0)
        return labels.to(torch.uint8).numpy(), best.numpy()
    best = block[allowed[0]].copy()
    labels = np.full(best.shape, allowed[0], dtype=np.uint8)
    more = np.empty(best.shape, dtype=bool)
    for c in allowed[1:]:
        np.greater(block[c], best, out=more)
        np.putmask(labels, more, c)
        np.maximum(best, block[c], out=best)
    return labels, best


def _inside(aoi, grid, row_off: int, height: int) -> np.ndarray:
    window = Window(0, row_off, grid.width, height)
    return rasterize([(aoi, 1)], out_shape=(height, grid.width), transform=grid.window_transform(window),
                     fill=0, dtype="uint8").astype(bool)  # fmt: skip
