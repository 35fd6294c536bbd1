"""Label sources: labels on the raster grid, split into training and validation, and their census.

A *label source* answers, for any window, the class index of every pixel (255 = unlabelled),
the split of every pixel (0 train, 1 validation, -1 none) and the id of the polygon or block
it comes from. It reads no file itself: the inputs come read through ``terralearn.io``.
"""

from __future__ import annotations

from terralearn.geo.grid import Grid
from terralearn.io.inputs import Inputs
from terralearn.labels.census import Census, take_census
from terralearn.labels.raster import RasterLabels, prepare_raster_labels
from terralearn.labels.vector import GeometryReport, VectorLabels, clean_vector, prepare_vector_labels

__all__ = ["Census", "GeometryReport", "RasterLabels", "VectorLabels", "clean_vector", "prepare_labels", "take_census"]


def default_block_size(tile_x: int, tile_y: int, grid: Grid) -> int:
    """Four chips a side, but small enough that the raster holds at least about 10 blocks."""
    size = 4 * max(tile_x, tile_y)
    while size > max(tile_x, tile_y) and (-(-grid.width // size)) * (-(-grid.height // size)) < 10:
        size //= 2
    return max(size, max(tile_x, tile_y))


def prepare_labels(inputs: Inputs):
    """The label source of the inputs, with the train/validation split their config asks for.

    ``block_size`` given: the blocks split uses exactly that size; otherwise it starts from
    :func:`default_block_size` and shrinks on small labelled areas. The config's ``stride``
    (the chips' stride) makes the area a mask leaves for chips exact; None assumes every tile position.
    """
    cfg = inputs.config
    split, block_size = cfg.split, cfg.block_size
    choose = block_size is None
    if split == "random":
        # Random chip cells of one chip size: the nearest thing to a random chip split that still keeps
        # validation labels out of training chips. Neighbouring pixels still leak; for comparison only.
        block_size = max(cfg.tile_size_x, cfg.tile_size_y)
        choose = False
    block_size = block_size or default_block_size(cfg.tile_size_x, cfg.tile_size_y, inputs.grid)
    if inputs.label_kind == "vector":
        labels = prepare_vector_labels(inputs, block_size, choose)
    else:
        labels = prepare_raster_labels(inputs, block_size, choose)
    labels.split_method = "random" if split == "random" else labels.split_method
    return labels
