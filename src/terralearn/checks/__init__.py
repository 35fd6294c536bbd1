"""Pre-flight checks of an export's inputs: one function per pitfall.

Each check returns findings with a severity (error / warning / info), a plain-words
message quoting what was found, and a fix. ``run_checks`` runs them all; ``export`` runs
the same checks first and refuses to start on any error.
"""

from __future__ import annotations

from terralearn.checks.findings import SEVERITY_ORDER, CheckReport, Finding, Severity
from terralearn.checks.inputs import STRUCTURAL_CHECKS
from terralearn.checks.labels import (
    check_class_balance,
    check_nodata,
    check_split,
    check_split_method,
    check_tile_vs_polygons,
)
from terralearn.config import CheckConfig
from terralearn.io.inputs import read_inputs
from terralearn.io.raster import RasterStack
from terralearn.labels import prepare_labels, take_census

__all__ = ["CheckReport", "Finding", "Severity", "run_checks"]


def run_checks(config: CheckConfig, progress=None) -> CheckReport:
    """Run every check on the inputs of an export. File errors raise; everything else is a finding.

    The split is the one the config asks for. An export's config also brings the chips' stride,
    which lets a blocks split count exactly the area a mask leaves for chips; without it every
    tile position is assumed.
    """
    inputs = read_inputs(config)
    findings = [f for check in STRUCTURAL_CHECKS for f in check(inputs)]
    report = CheckReport(findings, inputs)
    if report.errors:
        return _sorted(report)
    labels = prepare_labels(inputs)
    report.labels = labels
    with RasterStack(config.rasters, config.resampling) as stack:
        census = take_census(stack, labels, progress=progress)
    report.census = census
    findings += check_tile_vs_polygons(inputs, labels)
    findings += check_class_balance(inputs, labels, census)
    findings += check_nodata(inputs, labels, census)
    findings += check_split_method(labels)
    findings += check_split(inputs, labels, census)
    return _sorted(report)


def _sorted(report: CheckReport) -> CheckReport:
    report.findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return report
