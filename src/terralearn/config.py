"""One flat, typed config per stage.

Every field is described (the CLI help and the web forms reuse the descriptions), unknown
fields are refused, and each config carries a schema version so a saved config can be
read back by a later TerraLearn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from terralearn.errors import ConfigError, format_validation_error
from terralearn.tasks import TASKS

SCHEMA_VERSION = 1

#: Label value written into label chips for pixels outside every label polygon.
UNLABELLED = 255

Resampling = Literal["auto", "nearest", "bilinear", "cubic", "average", "mode", "max", "min"]
SplitMethod = Literal["auto", "polygons", "blocks", "random"]
OutputTiles = Literal["features_only", "all"]
ChipFormat = Literal["classified_tiles", "pascal_voc", "kitti", "coco", "rcnn_masks", "coco_instances", "unet_id"]
TaskName = Literal["pixel_classification", "detection", "instances"]
InvalidGeometries = Literal["fix", "drop"]


#: The workspace (run table) a stage records into; run-time context, so it is left out of saved settings.
WorkspaceField = Annotated[
    Path | None,
    Field(
        exclude=True,
        description="Workspace folder holding the run table (default: $TERRALEARN_WORKSPACE, else the current folder).",
    ),
]


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
    split: SplitMethod = Field(
        "auto",
        description="Train/validation split: 'polygons' holds out whole label polygons, 'blocks' square spatial "
        "blocks, 'random' random chips (leaky, for comparison only). 'auto': polygons for vector labels, "
        "blocks for raster labels.",
    )
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Fraction of the labels held out for validation.")
    seed: int = Field(0, description="Seed of the split and of any other random choice.")
    block_size: int | None = Field(
        None, gt=0, description="Block side in pixels for split='blocks'; default four tile sizes (two for detection)."
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

    @property
    def stride(self) -> tuple[int, int] | None:
        """The chips' step, which a blocks split inside a mask counts exactly; unknown before an export."""
        return None


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
    task: TaskName = Field(
        "pixel_classification",
        description="What the chips teach: pixel_classification (a class per pixel), detection (boxes) or "
        "instances (one outline per object).",
    )
    metadata_format: ChipFormat | None = Field(
        None,
        description="Chip layout: 'classified_tiles' (image chip + label mask chip) for pixel classification; "
        "'pascal_voc' (one XML per chip), 'kitti' (rectangles) or 'coco' (one JSON) for detection; "
        "'rcnn_masks' (a mask per class with an ID per instance), 'coco_instances' (polygons in one JSON) or "
        "'unet_id' (object, border and interior masks) for instances. Default: the task's first.",
    )
    min_visible: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Detection: an object counts in a chip when at least this fraction of its area is inside "
        "(typical 0.8); objects cut by the chip edge are flagged truncated.",
    )
    empty_ratio: float = Field(
        0.0,
        ge=0,
        description="Detection with features_only: also keep this many chips without objects per chip with "
        "objects (e.g. 0.2), drawn at random, so the detector sees background too.",
    )
    border_width: int = Field(
        2, ge=1, le=32, description="Instances: width in pixels of the border band of the U-Net-ID targets."
    )
    interior_erosion: int = Field(
        2, ge=1, le=32, description="Instances: pixels eroded from each object for its interior (U-Net-ID markers)."
    )
    compress: bool = Field(True, description="Deflate-compress chips of 64x64 pixels or more.")
    overwrite: bool = Field(False, description="Replace the output folder if it exists.")
    workspace: Annotated[
        WorkspaceField, Field(description="Workspace folder whose run table records the chip set (none: not recorded).")
    ] = None

    @property
    def stride(self) -> tuple[int, int]:
        return (self.stride_x or self.tile_size_x, self.stride_y or self.tile_size_y)

    @property
    def layout(self) -> str:
        """The chip layout written: the one asked for, else the task's default."""
        return self.metadata_format or TASKS[self.task].label_formats[0]

    @model_validator(mode="after")
    def _layout_fits_the_task(self):
        formats = TASKS[self.task].label_formats
        if self.layout not in formats:
            raise ValueError(f"the chip layout {self.layout!r} is not one for {self.task}: use {', '.join(formats)}")
        return self


__all__ = [
    "SCHEMA_VERSION",
    "UNLABELLED",
    "CheckConfig",
    "ConfigError",
    "ExportConfig",
]


Architecture = Literal[
    "unet", "unetplusplus", "deeplabv3", "deeplabv3plus", "pspnet", "fpn", "linknet", "manet", "upernet",
    "segformer", "tiny", "cnn_s", "cnn_m", "random_forest", "auto",
    # object detectors (``terralearn.models.detection.DETECTORS``)
    "faster_rcnn_resnet18_fpn", "faster_rcnn_resnet34_fpn", "faster_rcnn_resnet50_fpn", "faster_rcnn_mobilenet_v3_fpn",
    "retinanet_resnet18_fpn", "fcos_resnet18_fpn", "ssdlite_mobilenet_v3",
    # instance segmentation (``terralearn.models.detection.INSTANCE_MODELS``)
    "mask_rcnn_resnet18_fpn", "mask_rcnn_resnet50_fpn",
]  # fmt: skip
#: The architectures that are object detectors (the others are pixel classifiers).
DETECTOR_NAMES: tuple[str, ...] = (
    "faster_rcnn_resnet18_fpn", "faster_rcnn_resnet34_fpn", "faster_rcnn_resnet50_fpn", "faster_rcnn_mobilenet_v3_fpn",
    "retinanet_resnet18_fpn", "fcos_resnet18_fpn", "ssdlite_mobilenet_v3",
)  # fmt: skip
#: The architectures that are instance-segmentation models (masks per object).
INSTANCE_MODEL_NAMES: tuple[str, ...] = ("mask_rcnn_resnet18_fpn", "mask_rcnn_resnet50_fpn")
DetectorPreset = Literal["auto", "cpu", "full"]
Refit = Literal["auto", "on", "off"]
#: The candidates of ``--model auto``, in the order they are tried (the forest first: fast, and the bar to beat).
Candidate = Literal["random_forest", "cnn_s", "cnn_m"]
CANDIDATES: tuple[str, ...] = ("random_forest", "cnn_s", "cnn_m")
Loss = Literal["ce", "focal", "dice", "focal_dice"]
Monitor = Literal["val_loss", "accuracy", "dice", "mean_iou"]
Weights = Literal["auto", "imagenet", "none"]
Device = Literal["auto", "cpu", "cuda"]
AUGMENTATIONS = ("flip", "rot90", "jitter", "noise")
_NOT_A_PATH = PydanticCustomError("path_type", "Input is not a valid path for <class 'pathlib.Path'>")


class TrainConfig(StageConfig):
    """Stage 2: a ChipSet -> a model package, recorded as a run."""

    chips: Path | None = Field(None, description="Chip set folder written by `terralearn export`.")
    out: Path | None = Field(None, description="Model package folder to write (a .zip of it is written next to it).")
    model: Architecture = Field(
        "auto",
        description="auto (default): choose among the random forest and small CNNs by grouped cross-validation "
        "on held-out polygons, within --time-budget, then refit on every label. Or exactly: unet, unetplusplus, "
        "deeplabv3, deeplabv3plus, pspnet, fpn, linknet, manet, upernet, segformer; cnn_s, cnn_m (small dilated "
        "CNNs); tiny (two-layer CNN, for quick looks); random_forest (per-pixel baseline). On a detection chip set, "
        "auto is faster_rcnn_resnet18_fpn; or faster_rcnn_resnet34_fpn, faster_rcnn_resnet50_fpn, "
        "faster_rcnn_mobilenet_v3_fpn, retinanet_resnet18_fpn, fcos_resnet18_fpn, ssdlite_mobilenet_v3.",
    )
    time_budget: float = Field(
        600.0,
        ge=30,
        description="--model auto: seconds the whole selection may take (cross-validation and refit); on a "
        "detection chip set, seconds the training and its refit may take (the epochs are planned after each one).",
    )
    refit: Refit = Field(
        "auto",
        description="Detection: after the run on the export's training blocks, whose validation blocks choose the "
        "number of epochs and give every reported figure, train the detector again on every chip (validation "
        "blocks and block borders too) for that many epochs, and ship it. auto: on.",
    )
    cv_folds: int = Field(
        3, ge=2, le=10, description="--model auto: folds of whole polygons (or label patches) for cross-validation."
    )
    candidates: list[Candidate] = Field(
        default_factory=lambda: list(CANDIDATES),
        min_length=1,
        description="--model auto: the candidates tried, of random_forest, cnn_s, cnn_m.",
    )
    steps: int | None = Field(
        None,
        ge=10,
        le=20000,
        description="--model auto: training steps of each network, fixed, so that the same data give the same "
        "model on every machine however fast (the time budget then only stops an overrun). Default: as many as "
        "--time-budget allows on this machine, at most 600.",
    )
    backbone: str = Field(
        "resnet18",
        description="Encoder: resnet18/34/50/101, mobilenet_v2, mobilenet_v3, efficientnet-b0..b4, mit_b0..b2 "
        "(SegFormer), or any timm encoder as timm:NAME.",
    )
    weights: Weights = Field(
        "auto",
        description="Pretrained encoder weights: 'imagenet' (fail if unavailable), 'none' (random), 'auto' "
        "(imagenet if available offline, else random, said once).",
    )
    epochs: int = Field(40, gt=0, description="Maximum number of epochs (typical 20-100).")
    batch_size: int | None = Field(
        None,
        gt=0,
        description="Chips per training step (default 16 for pixel classification, typical 8-64; 4 for detection, "
        "whose chips each hold many regions; lower it if memory runs out).",
    )
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate; by default chosen by a short learning-rate range test."
    )
    patience: int = Field(
        10, ge=0, description="Stop when the monitored metric has not improved for this many epochs (0 = never)."
    )
    monitor: Monitor = Field(
        "mean_iou", description="Metric that picks the best epoch and drives early stopping (val_loss or a score)."
    )
    freeze_backbone: bool = Field(False, description="Train only the decoder; keep the (pretrained) encoder fixed.")
    augment: list[str] = Field(
        default_factory=lambda: ["flip", "rot90", "jitter"],
        description="Augmentations: any of flip, rot90, jitter (mild per-band gain/offset), noise; empty for none.",
    )
    chip_size: int | None = Field(
        None, gt=0, description="Resize chips to this size before training (default: as exported)."
    )
    loss: Loss = Field("ce", description="Loss: ce (cross-entropy), focal, dice, or focal_dice.")
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal loss (typical 1-3).")
    class_balancing: bool = Field(False, description="Weight the loss by inverse class frequency.")
    oversample: bool = Field(False, description="Draw chips that contain rare classes more often.")
    mixup: float = Field(0.0, ge=0, description="Mixup strength alpha (0 = off; typical 0.2-0.4).")
    ignore_classes: list[str] = Field(
        default_factory=list, description="Class values or names left out of the loss and the metrics."
    )
    baseline: bool = Field(True, description="Also train the per-pixel random-forest baseline on the same chips.")
    trees: int = Field(100, gt=0, description="Random forest: number of trees.")
    detector_preset: DetectorPreset = Field(
        "auto",
        description="Detection: cpu (fewer region proposals and sampled regions: trains in minutes on a laptop), "
        "full (torchvision's defaults), or auto (cpu on the CPU, full on a GPU).",
    )
    anchor_sizes: list[int] | None = Field(
        None,
        min_length=5,
        max_length=5,
        description="Detection: five anchor sides in pixels, one per pyramid level (default 8-128 px from 128 px "
        "chips up, 4-64 px below: aerial objects keep their size in pixels).",
    )
    onnx: bool = Field(
        True,
        description="Also export the network to ONNX into the package's cache: classify on a CPU then runs it "
        "without loading PyTorch (about 2 s more for a U-Net / ResNet-18).",
    )
    device: Device = Field("auto", description="cuda when available (mixed precision), else cpu.")
    seed: int = Field(0, description="Seed of initialisation, sampling and augmentation.")
    overwrite: bool = Field(False, description="Replace the output package if it exists.")
    name: str | None = Field(None, description="A name for the run in the run table.")
    resume: int | None = Field(
        None,
        exclude=True,
        description="Continue the interrupted run RUN from its last checkpoint, with the settings it was started "
        "with (chips and out may then be left out).",
    )
    workspace: WorkspaceField = None

    def batch_for(self, task: str) -> int:
        """Chips per step: ``batch_size`` if given, else the task's default (16; 4 for detection)."""
        return self.batch_size or TASKS[task].batch_size

    @property
    def encoder(self) -> str | None:
        """The backbone actually used: None for models without one (tiny, random_forest)."""
        return None if self.model in ("tiny", "cnn_s", "cnn_m", "random_forest", "auto") else self.backbone

    @model_validator(mode="after")
    def _known_augmentations(self):
        unknown = [a for a in self.augment if a not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _chips_and_out_unless_resuming(cls, data, handler):
        """chips and out are required, as for any stage, except when resuming (they come from the run)."""
        missing: list[InitErrorDetails] = []
        if isinstance(data, dict) and data.get("resume") is None:
            missing = [InitErrorDetails(type="missing", loc=(n,), input=data) if n not in data
                       else InitErrorDetails(type=_NOT_A_PATH, loc=(n,), input=None)
                       for n in ("chips", "out") if data.get(n) is None]  # fmt: skip
        try:
            config = handler(data)
        except ValidationError as exc:
            if not missing:
                raise
            others = [InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx", {}))
                      for e in exc.errors(include_url=False) if e["loc"]]  # fmt: skip
            raise ValidationError.from_exception_data(cls.__name__, missing + others) from None
        if missing:
            raise ValidationError.from_exception_data(cls.__name__, missing)
        return config


class ReportConfig(StageConfig):
    """The HTML report of a recorded training run, rebuilt from its run folder."""

    run: int = Field(..., description="Run number (see `terralearn runs`).")
    out: Path | None = Field(
        None, description="Folder for report.html and its PNGs (default: the run folder's report/)."
    )
    workspace: WorkspaceField = None


Backend = Literal["auto", "torch", "onnx"]


class ClassifyConfig(StageConfig):
    """Stage 3: a model package + raster(s) -> a classified map (Cloud-Optimized GeoTIFF)."""

    model: Path = Field(..., description="Model package folder or .zip written by `terralearn train`.")
    rasters: list[Path] = Field(
        ..., min_length=1, description="Rasters stacked as at export, in the same order (band names are checked)."
    )
    out: Path = Field(..., description="Output map (.tif): uint8 class indices, 255 = nodata, colour table.")
    resampling: list[Resampling] = Field(
        default_factory=lambda: ["auto"], description="Resampling of rasters on another grid, as at export."
    )
    tile_size: int | None = Field(
        None, gt=0, description="Tile side in pixels (default: the training chip size, which models handle best)."
    )
    overlap: int | None = Field(
        None, ge=0, description="Overlap between tiles in pixels, blended with smooth weights (default: tile / 4)."
    )
    batch_size: int | None = Field(
        None, gt=0, description="Tiles per inference batch (default: about 131,072 pixels of tiles, at least 8)."
    )
    tta: bool = Field(False, description="Test-time augmentation: average flips and 90-degree rotations (8x slower).")
    predict_background: bool = Field(
        True, description="Allow the background class in the output (off: the best non-background class wins)."
    )
    aoi: Path | None = Field(None, description="Area-of-interest polygons: pixels outside are nodata.")
    probabilities: bool = Field(False, description="Also write the winning class's probability (uint8 0-100).")
    backend: Backend = Field(
        "auto",
        description="Inference backend: torch (CPU or CUDA), onnx (ONNX Runtime, CPU), or auto: onnx on a CPU when "
        "the package holds a current ONNX export for the tile size (training makes one), else torch.",
    )
    check_band_names: bool = Field(
        True, description="Refuse rasters whose band names differ from the model's (off: only the count must match)."
    )
    device: Device = Field("auto", description="cuda when available (half precision), else cpu.")
    overwrite: bool = Field(False, description="Replace the output if it exists.")


class OnnxConfig(StageConfig):
    """A model package -> an ONNX model with the model card in its metadata, checked against PyTorch."""

    package: Path = Field(..., description="Model package folder or .zip written by `terralearn train`.")
    out: Path | None = Field(None, description="ONNX file (default PKG/model.onnx).")
    tolerance: float = Field(1e-3, description="Largest difference from the PyTorch output allowed.")
    size: tuple[int, int] | None = Field(
        None, description="Tile height and width of the graph (default: the training chip, padded to a multiple of 32)."
    )


class EvaluateConfig(StageConfig):
    """Stage 4: a classified map + reference data -> accuracy metrics and a report."""

    prediction: Path = Field(..., description="Classified map written by `terralearn classify`.")
    reference: Path = Field(..., description="Reference polygons or points (vector with a class field) or a raster.")
    class_field: str | None = Field(None, description="Vector reference: the field holding the class values.")
    out: Path = Field(..., description="Output folder: metrics.json, confusion matrix PNG, report.html.")
    image: list[Path] = Field(default_factory=list, description="Input raster(s) shown next to the map in the report.")
    rgb_bands: list[int] | None = Field(None, description="Bands (1-based) of the image shown as red, green, blue.")
    area_adjusted: bool = Field(True, description="Area-adjusted accuracy and class areas (Olofsson et al. 2014).")
    overwrite: bool = Field(False, description="Replace the output folder if it exists.")
    workspace: WorkspaceField = None


class DemoConfig(StageConfig):
    """The main job on the built-in sample scene: every stage of the workflow, one after the other."""

    folder: Path = Field(..., description="Folder for the demo outputs (earlier demo output in it is replaced).")
    seed: int = Field(42, description="Seed of the sample scene and the split.")
    epochs: int = Field(15, description="Maximum number of epochs of a network.")
    steps: int = Field(
        300,
        ge=10,
        description="Training steps of the small CNN in the model selection: fixed, so that the demo gives the same "
        "model on every machine (about 2 minutes on 2 cores).",
    )
    time_budget: float = Field(
        600.0, description="Seconds the model selection may take: only stops an overrun (the steps are fixed)."
    )
    model: Architecture = Field("auto", description="Model trained (auto: chosen by cross-validation).")
    workspace: WorkspaceField = None


class DetectionEvaluateConfig(StageConfig):
    """Stage 4 for detections: detected boxes + reference objects -> AP, precision, recall and a report."""

    prediction: Path = Field(
        ..., description="Detections GeoPackage written by `terralearn detect` (fields class_value, class_name, score)."
    )
    reference: Path = Field(
        ..., description="Reference objects: polygons, boxes or points with a class field (any CRS; reprojected)."
    )
    class_field: str | None = Field(
        None,
        description="Reference field holding the class values or names (default: every reference object is of the "
        "detections' only class).",
    )
    out: Path = Field(..., description="Output folder: metrics.json, pr_curves.png, seams.png, report.html.")
    min_iou: float = Field(
        0.5, gt=0, le=1, description="Intersection over union at which a detection matches a reference object."
    )
    score_threshold: float = Field(
        0.0, ge=0, le=1, description="Precision, recall, F1 and the counts use the detections scoring at least this."
    )
    aoi: Path | None = Field(
        None, description="Area-of-interest polygons: only detections and objects whose centre lies inside count."
    )
    point_radius: float | None = Field(
        None, gt=0, description="Point references: half-side in map units of the box drawn around each point."
    )
    raster: Path | None = Field(
        None,
        description="Raster the detections were made on, for the tile grid of the seam analysis (default: the grid "
        "recorded in the detections file).",
    )
    tile_size: int | None = Field(
        None,
        gt=0,
        description="Tile side in pixels used to detect, for the seam analysis (default: the one recorded in the "
        "detections file; none: no seam analysis).",
    )
    overlap: int | None = Field(
        None, ge=0, description="Overlap between tiles in pixels, for the seam analysis (default: recorded, else 0)."
    )
    overwrite: bool = Field(False, description="Replace the output folder if it exists.")
    workspace: WorkspaceField = None

    @classmethod
    def _stage_name(cls) -> str:
        return "evaluate"


MergeMethod = Literal["nms", "nmm", "greedy_nmm"]
MatchMetric = Literal["iou", "ios"]


class DetectConfig(StageConfig):
    """Stage 3 for detection: a detection package + raster(s) -> a GeoPackage of boxes with class and score."""

    model: Path = Field(
        ...,
        description="Detection model package folder or .zip written by `terralearn train`, or an ONNX object "
        "detector in the QGIS Deepness convention (.onnx: a YOLO model, or `terralearn export-onnx` of a detector).",
    )
    rasters: list[Path] = Field(
        ..., min_length=1, description="Rasters stacked as at export, in the same order (band names are checked)."
    )
    out: Path = Field(..., description="Output GeoPackage (.gpkg): layer 'detections', one box per object.")
    resampling: list[Resampling] = Field(
        default_factory=lambda: ["auto"], description="Resampling of rasters on another grid, as at export."
    )
    tile_size: int | None = Field(
        None,
        ge=32,
        description="Tile side in pixels (default: the training chip size, at least 256: detectors never resize, "
        "and their proposal budgets grow with the tile, so larger tiles see more context and fewer seams).",
    )
    overlap: int | None = Field(
        None,
        ge=0,
        description="Overlap between tiles in pixels (default: a quarter of the tile, raised to the largest anchor "
        "size of the model so that the largest objects it targets fit whole in one tile, at most half the tile).",
    )
    batch_size: int | None = Field(None, gt=0, description="Tiles per inference batch (default: 4, 16 on CUDA).")
    threshold: float = Field(0.3, ge=0, le=1, description="Confidence: detections scoring below are dropped.")
    nms_overlap: float = Field(
        0.5, ge=0, le=1, description="Two detections match (duplicates across a seam) above this overlap."
    )
    merge: MergeMethod = Field(
        "nms",
        description="How duplicates across tile seams merge: nms keeps the best box; nmm joins every chain of "
        "matching boxes into their envelope; greedy_nmm lets the best box absorb its matches (a cut box grows whole).",
    )
    match_metric: MatchMetric = Field(
        "iou", description="Overlap measure for matches: iou, or ios (intersection over the smaller box)."
    )
    class_agnostic: bool = Field(False, description="Match boxes of different classes too (one object, one box).")
    exclude_padding: bool = Field(
        True,
        description="Drop detections whose centre lies in a tile's overlap margin shared with a neighbour tile "
        "(each tile keeps its central part: cut boxes at tile edges never reach the merge).",
    )
    tta: bool = Field(False, description="Test-time augmentation: also detect on flips, un-flip and merge (4x slower).")
    aoi: Path | None = Field(
        None, description="Area-of-interest polygons: tiles outside are skipped, detections centred outside dropped."
    )
    check_band_names: bool = Field(
        True, description="Refuse rasters whose band names differ from the model's (off: only the count must match)."
    )
    device: Device = Field("auto", description="cuda when available, else cpu.")
    overwrite: bool = Field(False, description="Replace the output if it exists.")
    workspace: WorkspaceField = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.out.suffix.lower() != ".gpkg":
            raise ValueError(f"the output must be a GeoPackage ending in .gpkg, not '{self.out}'")
        if len(self.resampling) not in (1, len(self.rasters)):
            raise ValueError(
                f"give one resampling method for all rasters or one per raster ({len(self.rasters)}), "
                f"not {len(self.resampling)}"
            )
        if self.tile_size is not None and self.overlap is not None and self.overlap >= self.tile_size // 2 + 1:
            raise ValueError(f"overlap ({self.overlap}) must be at most half of tile_size ({self.tile_size})")
        return self
