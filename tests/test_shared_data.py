"""Integration tests on the real datasets in ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

from terralearn.config import UNLABELLED, ExportConfig
from terralearn.export import export

pytestmark = pytest.mark.shared


def test_landsat_stack_with_land_cover_polygons(shared_data, tmp_path):
    folder = shared_data / "landsat7_landcover_ceholden"
    raster = folder / "LE70220491999322EDC01_stack.gtif"
    config = ExportConfig.build(
        rasters=[raster], labels=folder / "training_data.shp", class_field="id", class_name_field="class",
        tile_size_x=32, tile_size_y=32, stride_x=16, stride_y=16, out=tmp_path / "chips",
    )  # fmt: skip
    result = export(config)
    m = result.manifest
    assert m["band_count"] == 8 and m["grid"]["epsg"] == 32615 and m["grid"]["pixel_size"] == [30.0, 30.0]
    assert [c["value"] for c in m["classes"]] == [1, 2, 3, 4, 5]
    assert [c["name"] for c in m["classes"]] == ["forest", "water", "herbaceous", "barren", "urban"]
    # the two polygons whose id and class text disagree are reported
    assert any(f.check == "class_names" for f in result.findings)
    assert result.train_chips > 0 and result.val_chips > 0 and m["split"]["method"] == "polygons"
    # pixel counts agree with the tutorial's rasterised training data (718 labelled pixels)
    with rasterio.open(folder / "training_data.gtif") as ref:
        truth = ref.read(1)
    total = sum(c["pixels"]["total"] for c in m["classes"])
    assert abs(total - int((truth > 0).sum())) <= 0.02 * total
    tiles = gpd.read_file(tmp_path / "chips" / "tiles.gpkg")
    with rasterio.open(raster) as src:
        for row in tiles.head(10).itertuples():
            with (
                rasterio.open(tmp_path / "chips" / row.image) as img,
                rasterio.open(tmp_path / "chips" / row.label) as lab,
            ):
                assert img.crs == src.crs
                assert img.transform == src.transform @ Affine.translation(row.col, row.row)
                window = src.read(window=((row.row, row.row + 32), (row.col, row.col + 32)))
                assert np.array_equal(img.read(), window)
                label = lab.read(1)
                ref_window = truth[row.row : row.row + 32, row.col : row.col + 32]
                labelled = label != UNLABELLED
                # every labelled chip pixel matches the reference class (index + 1 = value) where unambiguous
                agree = (label[labelled] + 1) == ref_window[labelled]
                assert agree.mean() > 0.9


def test_lidar_rasters_stacked_with_footprints_in_another_crs(shared_data, tmp_path):
    folder = shared_data / "lidar_dsm_buildings_opengeos"
    config = ExportConfig.build(
        rasters=[folder / "dsm.tif", folder / "dtm.tif", folder / "hag.tif"], labels=folder / "buildings.geojson",
        class_value="building", background_class=True, tile_size_x=64, tile_size_y=64, stride_x=32, stride_y=32,
        out=tmp_path / "chips",
    )  # fmt: skip
    result = export(config)
    m = result.manifest
    assert m["band_names"] == ["dsm", "dtm", "hag"] and m["grid"]["epsg"] == 26918
    assert [c["name"] for c in m["classes"]] == ["background", "building"]
    assert any(f.check == "labels_crs" and "EPSG:4326" in f.message for f in result.findings)
    building = m["classes"][1]["pixels"]["total"]
    assert 0.8 * 6402 < building < 1.2 * 6402  # SOURCE.md: rasterised footprints = 6,402 px
    tiles = gpd.read_file(tmp_path / "chips" / "tiles.gpkg")
    assert tiles.crs.to_epsg() == 26918
    with rasterio.open(folder / "hag.tif") as hag_src:
        hag = hag_src.read(1)
        for row in tiles.itertuples():
            with (
                rasterio.open(tmp_path / "chips" / row.label) as lab,
                rasterio.open(tmp_path / "chips" / row.image) as img,
            ):
                label = lab.read(1)
                assert img.transform == hag_src.transform @ Affine.translation(row.col, row.row)
                window = hag[row.row : row.row + 64, row.col : row.col + 64]
                on_building = label == 1
                if on_building.sum() > 50:
                    # footprints sit on tall pixels: 99.97 % of footprint pixels have HAG > 3 m (SOURCE.md)
                    assert (window[on_building] > 3).mean() > 0.9
                    assert np.allclose(img.read(3)[on_building], window[on_building])


def test_landsat_raster_labels(shared_data, tmp_path):
    folder = shared_data / "landsat7_landcover_ceholden"
    config = ExportConfig.build(
        rasters=[folder / "LE70220491999322EDC01_stack.gtif", folder / "LE70220492002106EDC00_stack.gtif"],
        labels=folder / "training_data.gtif", tile_size_x=32, tile_size_y=32, out=tmp_path / "chips",
    )  # fmt: skip
    result = export(config)
    m = result.manifest
    assert m["band_count"] == 16 and [c["value"] for c in m["classes"]] == [1, 2, 3, 4, 5]
    assert sum(c["pixels"]["total"] for c in m["classes"]) == 718
    assert m["split"]["method"] == "blocks"


def test_landsat_training_beats_the_random_forest(shared_data, tmp_path):
    """The acceptance run (defaults, polygon split, CPU); early stopping keeps it to about a minute."""
    from terralearn.config import TrainConfig
    from terralearn.train import train

    folder = shared_data / "landsat7_landcover_ceholden"
    chips = tmp_path / "chips"
    export(ExportConfig.build(
        rasters=[folder / "LE70220491999322EDC01_stack.gtif"], labels=folder / "training_data.shp", class_field="id",
        class_name_field="class", tile_size_x=32, tile_size_y=32, stride_x=16, stride_y=16, out=chips,
    ))  # fmt: skip
    result = train(TrainConfig.build(chips=chips, out=tmp_path / "pkg"), workspace=tmp_path)  # defaults: stops early
    assert result.card["training_data"]["split"] == "polygons"
    assert result.baseline["accuracy"] < 0.9  # the honest split: about 87 % for a per-pixel forest
    assert result.metrics["accuracy"] >= 0.9
    assert result.metrics["accuracy"] > result.baseline["accuracy"]
    html = result.report.read_text()
    assert "random forest" in html.lower() and "report" in html.lower()

    # stages 3 and 4: classify the whole stack, evaluate on the held-out polygons, against the forest's map
    import rasterio

    from terralearn.classify import classify
    from terralearn.config import ClassifyConfig, EvaluateConfig
    from terralearn.evaluate import evaluate
    from terralearn.runs import Registry

    raster = folder / "LE70220491999322EDC01_stack.gtif"
    forest = train(TrainConfig.build(chips=chips, out=tmp_path / "rf", model="random_forest"), workspace=tmp_path)
    scores = {}
    for name, package in (("unet", result.package), ("forest", forest.package)):
        mapped = classify(ClassifyConfig.build(model=package, rasters=[raster], out=tmp_path / f"{name}.tif"))
        with rasterio.open(mapped.out) as m, rasterio.open(raster) as src:
            assert (m.crs, m.transform, m.shape) == (src.crs, src.transform, src.shape)
        assessed = evaluate(EvaluateConfig.build(prediction=mapped.out, reference=chips / "validation.gpkg",
                                                 class_field="class_value", out=tmp_path / f"eval_{name}"),
                            workspace=tmp_path)  # fmt: skip
        scores[name] = assessed.metrics["overall_accuracy"]
    assert scores["unet"] >= 0.9 and scores["unet"] > scores["forest"]
    assert Registry(tmp_path).run(result.run_id)["eval_accuracy"] == pytest.approx(scores["unet"])
