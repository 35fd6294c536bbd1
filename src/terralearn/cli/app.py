"""The `terralearn` application: registers one command per module."""

from __future__ import annotations

import warnings

import typer

from terralearn import __version__
from terralearn.cli.check import check
from terralearn.cli.classify import classify
from terralearn.cli.demo import demo
from terralearn.cli.detect import detect
from terralearn.cli.evaluate import evaluate
from terralearn.cli.export import export
from terralearn.cli.onnx import export_onnx
from terralearn.cli.report import report
from terralearn.cli.runs import app as runs_app
from terralearn.cli.sample import sample
from terralearn.cli.train import train
from terralearn.cli.ui import ui

# Images without georeferencing (DOTA PNGs, COCO photos) are worked in pixel coordinates, and the commands say
# so in plain words; the libraries' own notes about the missing transform or CRS would only alarm.
for _note in ("Dataset has no geotransform", "The given matrix is equal to Affine.identity", "'crs' was not provided"):
    warnings.filterwarnings("ignore", message=_note)

app = typer.Typer(
    name="terralearn",
    help="Deep learning on geospatial rasters: check inputs, export chips, train, classify, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"terralearn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Deep learning on geospatial rasters: check inputs, export chips, train, classify, evaluate."""


app.command("demo", help="Run the workflow on the built-in sample scene (the README's first command).")(demo)
app.command("sample", help="Write the built-in sample scene (6-band image, label polygons, truth map).")(sample)
app.command("check", help="Pre-flight checks of rasters and labels; exits non-zero on any error.")(check)
app.command("export", help="Export training chips with a spatially honest train/validation split.")(export)
app.command("train", help="Train a pixel classifier on a chip set; package the model and record the run.")(train)
app.add_typer(runs_app, name="runs", help="List every training run (--sort, --json, --csv); `runs compare A B`.")
app.command("report", help="Write the HTML report of a training run (curves, scores, confusion matrix).")(report)
app.command("export-onnx", help="Export a model package to ONNX with its model card, verified against PyTorch.")(
    export_onnx
)
app.command("classify", help="Classify whole rasters with a model package into a georeferenced, styled map.")(classify)
app.command("detect", help="Detect objects in whole rasters with a detection package into a styled GeoPackage.")(detect)
app.command("evaluate", help="Accuracy of a classified map against reference data: scores, areas with CIs, report.")(
    evaluate
)
app.command("ui", help="Open the no-code web app on the workspace (the whole workflow in a browser).")(ui)
