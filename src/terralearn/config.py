"""One flat, typed config per stage.

Every field is described (the CLI help and the web forms reuse the descriptions), unknown
fields are refused, and each config carries a schema version so a saved config can be
read back by a later TerraLearn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from terralearn.errors import ConfigError, format_validation_error

SCHEMA_VERSION = 1

#: Label value written into label chips for pixels outside every label polygon.
UNLABELLED = 255

Resampling = Literal["auto", "nearest", "bilinear", "cubic", "average", "mode", "max", "min"]
SplitMethod = Literal["auto", "polygons", "blocks", "random"]
OutputTiles = Literal["features_only", "all"]
ChipFormat = Literal["classified_tiles"]
InvalidGeometries = Literal["fix", "drop"]


class StageConfig(BaseModel):
    """Base of every stage config: no unknown fields, a schema version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this settings schema.")

    @classmethod
    def build(cls, **values):
        """Validate ``values`` and raise a plain-words ConfigError instead of pydantic's."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise format_validation_error(cls._stage_name(), exc) from None

    @classmethod
    def _stage_name(cls) -> str:
        return cls.__name__.removesuffix("Config").lower()


class CheckConfig(StageConfig):
    """Inputs of an export, as the pre-flight checks see them."""

    rasters: list[Path] = Field(
        ...,
        min_length=1,
        description="Rasters stacked as channels in this order; every band of a multi-band file is added. "
        "Rasters on another grid are resampled onto the grid of the first.",
    )
    resampling: list[Resampling] = Field(
        default_factory=lambda: ["auto"],
        description="Resampling used to bring each raster onto the first raster's grid: one value for all, "
        "or one per raster. 'auto' uses 'average' when the raster's pixels are finer than the target grid "
        "(downsampling) and 'bilinear' otherwise.",
    )
    labels: Path = Field(..., description="Vector labels (GeoPackage, shapefile, GeoJSON) or a classified raster.")
    class_field: str | None = Field(
        None, description="Vector labels: the field holding the class value (integers such as 22531, or text)."
    )
    class_name_field: str | None = Field(None, description="Vector labels: optional field holding the class name.")
    class_value: str | None = Field(
        None,
        description="Vector labels without a class field: one class (e.g. 'building') for every feature. "
        "Combine with background_class for object-versus-background maps.",
    )
    label_nodata: float | None = Field(
        None,
        description="Raster labels: the value meaning 'unlabelled'. Default: the raster's nodata value, else 0.",
    )
    tile_size_x: int = Field(256, gt=0, description="Chip width in pixels (typical: 64-512).")
    tile_size_y: int = Field(256, gt=0, description="Chip height in pixels (typical: 64-512).")
    buffer_radius: float = Field(
        0.0, ge=0, description="Buffer, in the raster's CRS units, applied to point and line labels before rasterising."
    )
    mask: Path | None = Field(
        None, description="Area-of-interest polygons: only tiles lying completely inside them are written."
    )
    invalid_geometries: InvalidGeometries = Field(
        "fix", description="What to do with invalid label geometries: 'fix' repairs them, 'drop' removes them."
    )
    background_class: bool = Field(
        False,
        description="Make unlabelled pixels a real 'background' class (index 0). Only for labels that cover "
        "everything; sparse labels should leave this off.",
    )

    @model_validator(mode="after")
    def _resampling_matches_rasters(self):
        if len(self.resampling) not in (1, len(self.rasters)):
            raise ValueError(
                f"give one resampling method for all rasters or one per raster "
                f"({len(self.rasters)}), not {len(self.resampling)}"
            )
        return self

    def resampling_for(self, index: int) -> str:
        return self.resampling[0] if len(self.resampling) == 1 else self.resampling[index]


class ExportConfig(CheckConfig):
    """Stage 1: rasters + labels -> a ChipSet folder."""

    out: Path = Field(..., description="Output chip set folder (created; must not exist unless overwrite).")
    stride_x: int | None = Field(
        None, gt=0, description="Horizontal step between chips in pixels; default the tile width (no overlap)."
    )
    stride_y: int | None = Field(
        None, gt=0, description="Vertical step between chips in pixels; default the tile height (no overlap)."
    )
    output_tiles: OutputTiles = Field(
        "features_only",
        description="'features_only' writes only chips holding labelled pixels; 'all' writes every chip.",
    )
    min_polygon_overlap_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="A polygon counts in a chip only if at least this fraction of its area lies inside the chip "
        "(0 keeps every touching polygon; typical 0-0.5).",
    )
    max_nodata_fraction: float = Field(
        0.5, ge=0, le=1, description="Skip chips with more than this fraction of nodata pixels (typical 0-0.5)."
    )
    metadata_format: ChipFormat = Field(
        "classified_tiles", description="Chip layout: 'classified_tiles' (image chip + label mask chip)."
    )
    split: SplitMethod = Field(
        "auto",
        description="Train/validation split: 'polygons' holds out whole label polygons, 'blocks' square spatial "
        "blocks, 'random' random chips (leaky, for comparison only). 'auto': polygons for vector labels, "
        "blocks for raster labels.",
    )
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Fraction of the labels held out for validation.")
    block_size: int | None = Field(
        None, gt=0, description="Block side in pixels for split='blocks'; default four tile sizes."
    )
    seed: int = Field(0, description="Seed of the split and of any other random choice.")
    compress: bool = Field(True, description="Deflate-compress chips of 64x64 pixels or more.")
    overwrite: bool = Field(False, description="Replace the output folder if it exists.")

    @property
    def stride(self) -> tuple[int, int]:
        return (self.stride_x or self.tile_size_x, self.stride_y or self.tile_size_y)


def check_config_from(export: ExportConfig) -> CheckConfig:
    """The check settings contained in an export config."""
    fields = set(CheckConfig.model_fields)
    return CheckConfig(**{k: v for k, v in export.model_dump().items() if k in fields})


__all__ = [
    "SCHEMA_VERSION",
    "UNLABELLED",
    "CheckConfig",
    "ConfigError",
    "ExportConfig",
    "check_config_from",
]
