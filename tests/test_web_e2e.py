"""End to end in a real browser: a new user takes the sample scene through every page of the web app.

Headless Chromium from the system's package manager (``scripts/install-browser``), driven by Playwright;
no browser is ever downloaded. The app runs with uvicorn in a thread on a free loopback port, on a fresh
workspace. The user uploads the sample scene's image, labels and truth map from a folder outside the
workspace, checks the inputs, exports chips, trains a small model while watching it learn, opens the
run's report, classifies the scene, looks at the map and evaluates it. No request may leave this
computer and no page may log an error. A full-page screenshot of every page and of each stage's
finished state goes to ``test-output/screenshots/`` (or the folder named by TERRALEARN_SCREENSHOTS).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEPS = ["Data", "Check", "Export", "Train", "Runs", "Classify", "Detect", "Evaluate"]
JOB_TIMEOUT_MS = 120_000


def chromium_binary() -> str | None:
    """The system's Chromium (never one downloaded by Playwright)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("TERRALEARN_SCREENSHOTS") or REPO / "test-output" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("[0-9][0-9]-*.png"), *folder.glob("FAILED-*.png")]:  # this test's own, from a former run
        old.unlink()
    return folder


@pytest.fixture(scope="module")
def browser():
    exe = chromium_binary()
    if exe is None:
        pytest.skip("No Chromium on this machine: run scripts/install-browser (apt-get install chromium).")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The app on a fresh workspace, served by uvicorn in a thread: (base URL, workspace)."""
    import uvicorn

    from terralearn.web.app import create_app

    workspace = tmp_path_factory.mktemp("workspace")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(workspace), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("The web app did not start within 30 s.")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", workspace
    srv.should_exit = True
    thread.join(timeout=10)


class Watch:
    """Collects what must never happen: a request leaving this computer, an error in a page."""

    def __init__(self) -> None:
        self.external: list[str] = []
        self.errors: list[str] = []

    def attach(self, page) -> None:
        page.route("**/*", self._route)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: uncaught {e}"))
        page.on("requestfailed", self._failed)

    def _route(self, route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"console error: {msg.text} at {msg.location.get('url')}")

    def _failed(self, request) -> None:
        if urlsplit(request.url).hostname == "127.0.0.1" and request.failure != "net::ERR_ABORTED":
            self.errors.append(f"request failed: {request.url}: {request.failure}")

    def assert_clean(self) -> None:
        assert not self.external, f"Requests left this computer: {self.external}"
        assert not self.errors, "Errors in the pages:\n" + "\n".join(self.errors)


class User:
    """A person at the browser: opens pages, waits for jobs, checks pictures, takes screenshots."""

    def __init__(self, page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.count = 0

    def shot(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle")
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True, animations="disabled")

    def ready(self, step: str) -> None:
        """The page of a step is drawn, with the workflow path and the step marked as the current one."""
        page = self.page
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("nav.path li .label").all_inner_texts() == STEPS
        assert page.locator("nav.path li.current .label").inner_text() == step.title()
        assert page.locator("nav.path li.current a").get_attribute("aria-current") == "page"
        assert page.locator("h1").inner_text() == step.title()

    def open(self, step: str) -> None:
        self.page.goto(f"{self.base}/{step}")
        self.ready(step)

    def follow(self, link: str, step: str) -> None:
        self.page.get_by_role("link", name=link).click()
        self.page.wait_for_url(f"{self.base}/{step}")
        self.ready(step)

    def loaded(self, selector: str) -> int:
        """How many of the images matched hold real pixels, once all of them have finished loading."""
        self.page.wait_for_function(
            "s => { const all = [...document.querySelectorAll(s)]; return all.length && all.every(i => i.complete); }",
            arg=selector,
        )
        return self.page.evaluate(
            "s => [...document.querySelectorAll(s)].filter(i => i.naturalWidth > 0).length", selector
        )

    def wait_job(self, expected: str = "finished") -> None:
        """Wait for the job shown on the page to end; fail with its log unless it ended as expected."""
        page = self.page
        page.wait_for_function(
            "() => { const b = document.querySelector('.job-head .badge'); return b && !/running|queued/.test(b.className); }",
            timeout=JOB_TIMEOUT_MS,
        )
        badge = page.locator(".job-head .badge")
        if badge.inner_text() != expected:
            page.locator("details.log-box summary").click()
            pytest.fail(f"The job ended '{badge.inner_text()}':\n{page.locator('pre.log').inner_text()}")
        assert "Stop" not in page.locator(".job-head").inner_text()  # no stop button once it is over
        assert re.search(r"took (under 1 s|\d+ (s|min))", page.locator(".progress-text").inner_text())

    def metrics(self) -> dict[str, str]:
        """The headline numbers of a finished job: label -> value."""
        keys = self.page.locator(".job-result .metric .k").all_inner_texts()
        return dict(zip(keys, self.page.locator(".job-result .metric .v").all_inner_texts(), strict=True))

    def check_map(self) -> None:
        """The interactive map: tiles of the image and of the map drawn, a legend, a working opacity slider, zoom."""
        page = self.page
        page.wait_for_selector(".mapview.leaflet-container")
        assert page.locator(".mapview .leaflet-layer").count() == 2  # the image, and the map over it
        page.wait_for_function("() => document.querySelectorAll('.mapview img.leaflet-tile-loaded').length >= 2")
        assert self.loaded(".mapview img.leaflet-tile-loaded") >= 2
        names = page.locator(".mapwrap .legend > span").all_inner_texts()
        assert len(names) == 6 and {"water (11)", "forest (41)", "cropland (82)"} <= set(names), names
        slider = page.locator("input[type=range][aria-label='Map opacity']")
        slider.fill("30")
        overlay = page.locator(".mapview .leaflet-layer").nth(1)
        assert float(overlay.evaluate("e => getComputedStyle(e).opacity")) == pytest.approx(0.3)
        slider.fill("70")
        page.locator(".leaflet-control-zoom-in").click()  # zoom in: finer tiles are drawn
        page.wait_for_function(
            "() => !document.querySelector('.mapview .leaflet-zoom-anim')"
            " && document.querySelectorAll('.mapview img.leaflet-tile-loaded').length >= 2"
        )
        assert self.loaded(".mapview img.leaflet-tile-loaded") >= 2


def test_new_user_takes_the_sample_through_every_page(server, browser, shots, tmp_path):
    from playwright.sync_api import expect

    from terralearn.sample import make_sample

    base, workspace = server
    scene = make_sample(tmp_path / "my-data")  # where the user keeps their files: not inside the workspace
    assert not scene.raster.resolve().is_relative_to(workspace.resolve())

    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    watch = Watch()
    context.on("page", watch.attach)
    page = context.new_page()
    page.set_default_timeout(30_000)
    user = User(page, base, shots)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    step = "start"
    try:
        # ------------------------------------------------------------------ Data: upload, summaries, quick-looks
        step = "data"
        user.open("data")
        assert "Nothing here yet" in page.locator("table.files").inner_text()
        user.shot("data-empty")
        details = page.locator(".grid2 > section").nth(1)

        page.set_input_files("#upload-input", str(scene.raster))
        expect(page.locator(".notice")).to_have_text("Added uploads/sample_scene.tif (raster)")
        expect(details.locator("h2")).to_have_text("sample_scene.tif")
        summary = details.locator("dl.summary").inner_text()
        for fact in ("512 × 512 pixels, 6 bands (int16)", "blue, green, red, nir, swir1, swir2", "EPSG:32633",
                     "20 × 20 metre", "-9999"):  # fmt: skip
            assert fact in summary, (fact, summary)
        assert user.loaded(".quicklook") == 1
        user.shot("data-raster")

        page.set_input_files("#upload-input", str(scene.labels))
        expect(page.locator(".notice")).to_have_text("Added uploads/sample_labels.gpkg (vector)")
        expect(details.locator("h2")).to_have_text("sample_labels.gpkg")
        summary = details.locator("dl.summary").inner_text()
        assert "Polygon" in summary and "EPSG:32633" in summary
        fields = details.locator("table").inner_text()
        assert "class_id" in fields and "11, 21, 31, 41, 71, 82" in fields
        assert "class_name" in fields and "forest" in fields
        assert user.loaded(".quicklook") == 1
        assert page.locator("table.files tr.selected td.name").inner_text() == "sample_labels.gpkg"
        user.shot("data-labels")

        page.set_input_files("#upload-input", str(scene.truth))  # the full land-cover map, to evaluate against
        expect(page.locator(".notice")).to_have_text("Added uploads/sample_truth.tif (raster)")
        expect(details.locator("h2")).to_have_text("sample_truth.tif")
        assert "512 × 512 pixels, 1 band (uint8)" in details.locator("dl.summary").inner_text()
        assert user.loaded(".quicklook") == 1
        uploaded = sorted(p.name for p in (workspace / "uploads").iterdir())
        assert uploaded == ["sample_labels.gpkg", "sample_scene.tif", "sample_truth.tif"]
        timings["data"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Check
        step = "check"
        user.open("check")
        form = page.locator("form[data-stage=check]")
        picked = form.locator("[data-field=rasters] input[type=checkbox]:checked")
        assert picked.count() == 1 and picked.get_attribute("value") == "uploads/sample_scene.tif"
        assert form.locator("#f-labels").input_value() == "uploads/sample_labels.gpkg"
        page.wait_for_function("() => document.querySelector('#f-class_field').value === 'class_id'")
        user.shot("check-form")
        form.locator("#f-class_name_field").select_option("class_name")
        form.locator("#f-tile_size_x").fill("32")
        form.locator("#f-tile_size_y").fill("32")
        form.get_by_role("button", name="Run the checks").click()
        expect(page.locator(".summary-banner")).to_have_text("Ready to export.")
        findings = page.locator(".finding")
        assert findings.count() >= 2 and page.locator(".finding .badge.error").count() == 0
        assert "6 classes" in page.locator(".findings").inner_text()
        user.shot("check-findings")
        timings["check"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Export (tile size 32)
        step = "export"
        user.follow("Continue to Export →", "export")
        form = page.locator("form[data-stage=export]")
        assert form.locator("#f-tile_size_x").input_value() == "32"  # carried over from the check
        expect(form.locator("#f-class_field")).to_have_value("class_id")  # the layer's fields load after the page
        assert form.locator("#f-out").input_value() == "chips/chips-1"
        user.shot("export-form")
        form.get_by_role("button", name="Export chips").click()
        user.wait_job()
        numbers = user.metrics()
        chips, train, val = (
            int(numbers[k].replace(",", "")) for k in ("chips written", "for training", "held out for validation")
        )
        assert chips == train + val and train > 20 and val > 5, numbers
        assert (workspace / "chips" / "chips-1" / "manifest.json").is_file()
        expect(form.locator("#f-out")).to_have_value("chips/chips-2")  # the next free name, ready for another export
        user.shot("export-finished")
        timings["export"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Train, watching it learn
        step = "train"
        user.follow("Next: train a model →", "train")
        form = page.locator("form[data-stage=train]")
        assert form.locator("#f-chips").input_value() == "chips/chips-1"
        user.shot("train-form")
        form.locator("#f-model").select_option("tiny")
        assert "unused" in form.locator("[data-field=backbone]").get_attribute("class")
        form.locator("#f-epochs").fill("3")
        form.locator("details.more > summary").click()
        form.locator("#f-baseline").uncheck()
        form.locator("#f-learning_rate").fill("0.01")
        form.get_by_role("button", name="Start training").click()
        user.wait_job()
        assert page.locator("svg.chart").count() == 2
        assert page.locator("svg.chart[aria-label='Loss'] polyline").count() == 2  # training and validation loss
        assert page.locator("svg.chart[aria-label='Validation scores'] polyline").count() == 3
        assert "Epoch 3 of 3" in page.locator(".progress-text").inner_text()
        accuracy = user.metrics()["validation accuracy"]
        assert accuracy.endswith("%") and float(accuracy.rstrip(" %")) > 30, accuracy
        user.shot("train-finished")

        # a second, long run, watched live and stopped by hand (it keeps its best model so far)
        expect(form.locator("#f-out")).to_have_value("models/model-2")
        form.locator("#f-epochs").fill("500")
        form.locator("#f-patience").fill("0")  # never stop early on its own
        form.locator("#f-name").fill("long run")
        form.get_by_role("button", name="Start training").click()
        page.wait_for_selector(".job[data-job='3']")
        seen = page.wait_for_function(
            """() => {
                const badge = document.querySelector('.job-head .badge');
                if (!badge || !/running|queued/.test(badge.className)) return badge ? 'ended ' + badge.textContent : false;
                const text = document.querySelector('.progress-text').textContent;
                const epochs = document.querySelectorAll('svg.chart[aria-label=Loss] polyline');
                return epochs.length === 2 && /Epoch ([2-9]|\\d\\d+) of 500/.test(text) && / left$/.test(text) ? 'live' : false;
            }""",
            timeout=JOB_TIMEOUT_MS,
        ).json_value()
        if seen != "live":
            page.locator("details.log-box summary").click()
            pytest.fail(f"Never saw the training live ({seen}):\n{page.locator('pre.log').inner_text()}")
        live = page.locator(".progress-text").inner_text()
        assert re.search(r"Epoch \d+ of 500 · best so far: epoch \d+", live), live  # the epoch
        assert re.search(r"about [\d.]+ (s|min)\b.* left", live), live  # the time left
        assert page.locator("svg.chart[aria-label='Validation scores'] polyline").count() == 3  # the curves
        stop = page.get_by_role("button", name="Stop (keeps the best model)")  # the stop button
        assert stop.is_visible()
        user.shot("train-running")
        stop.click()
        user.wait_job("cancelled")
        stopped = page.locator(".progress-text").inner_text()
        assert stopped.startswith("Stopped on request: Epoch "), stopped
        assert page.get_by_role("button", name="Resume training").is_visible()
        assert page.get_by_role("link", name="Open the training report").is_visible()  # the best model was kept
        assert (workspace / "models" / "model-2" / "model.safetensors").is_file()
        user.shot("train-stopped")
        timings["train"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Runs: the table, the report
        step = "runs"
        user.open("runs")
        rows = page.locator("#runs-table tr")
        assert rows.count() == 3  # header + the two runs, newest first
        assert "long run" in rows.nth(1).inner_text() and "interrupted" in rows.nth(1).inner_text()
        assert rows.nth(1).get_by_role("button", name="Resume").is_visible()
        row = rows.nth(2).inner_text()
        assert "finished" in row and "tiny" in row and accuracy in row, row
        report = rows.nth(2).get_by_role("link", name="Open")
        href = report.get_attribute("href")
        assert href == "/files/runs/run-0001/report/report.html"
        with context.expect_page() as opened:
            report.click()
        report_page = opened.value
        report_page.wait_for_load_state()
        assert report_page.url == base + href
        assert report_page.title().startswith("TerraLearn run 1")
        assert (
            report_page.evaluate("() => [...document.images].filter(i => i.complete && i.naturalWidth > 0).length") >= 2
        )
        report_page.close()
        assert page.locator("#jobs-table tr").count() == 4  # header + the export and the two trainings
        page.locator("#runs-table th", has_text="Run").first.click()  # sortable: now oldest first
        expect(page.locator("#runs-table th.sorted.asc")).to_have_text("Run")
        expect(rows.nth(1)).not_to_contain_text("long run")
        for i in (1, 2):  # tick both runs: they are compared side by side
            page.locator("#runs-table tr").nth(i).locator("input[type=checkbox]").check()
        expect(page.locator("#compare h2")).to_have_text("Run 1 vs run 2")
        compared = page.locator("#compare table").first.inner_text()
        assert "epochs (maximum)" in compared and "long run" in compared and "points" in compared, compared
        user.shot("runs")
        timings["runs"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Classify: the map on the map viewer
        step = "classify"
        user.open("classify")
        form = page.locator("form[data-stage=classify]")
        form.locator("#f-model").select_option("models/model-1")  # the first, longer run
        picked = form.locator("[data-field=rasters] input[type=checkbox]:checked")
        assert picked.count() == 1 and picked.get_attribute("value") == "uploads/sample_scene.tif"
        assert form.locator("#f-out").input_value() == "maps/map-1.tif"
        user.shot("classify-form")
        form.locator("#f-tile_size").fill("128")
        form.get_by_role("button", name="Classify").click()
        user.wait_job()
        assert user.metrics()["pixels"] == "262,144"
        user.check_map()
        downloads = page.locator(".job-result .downloads a").all_inner_texts()
        assert downloads[:2] == ["Download the map (GeoTIFF)", "QGIS style (.qml)"], downloads
        with page.expect_download() as got:
            page.get_by_role("link", name="Download the map (GeoTIFF)").click()
        assert got.value.suggested_filename == "map-1.tif"
        assert Path(got.value.path()).read_bytes()[:4] in (b"II*\x00", b"II+\x00")
        user.shot("classify-finished")
        timings["classify"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Evaluate: metrics, confusion matrix
        step = "evaluate"
        user.follow("Next: evaluate the map →", "evaluate")
        form = page.locator("form[data-stage=evaluate]")
        assert form.locator("#f-prediction").input_value() == "maps/map-1.tif"
        image = form.locator("[data-field=image] input[type=checkbox]:checked")  # the exported image, ticked already
        assert image.count() == 1 and image.get_attribute("value") == "uploads/sample_scene.tif"
        # the honest reference is offered first: the polygons the export held out of training
        assert form.locator("#f-reference").input_value() == "chips/chips-1/validation.gpkg"
        page.wait_for_function("() => document.querySelector('#f-class_field').value === 'class_value'")
        user.shot("evaluate-form")
        form.get_by_role("button", name="Evaluate the map").click()
        user.wait_job()
        numbers = user.metrics()
        map_accuracy = numbers["overall accuracy"]
        assert float(map_accuracy.rstrip(" %")) > 40, numbers
        assert 0 < float(numbers["Cohen's kappa"]) <= 1, numbers
        assert int(numbers["reference pixels"].replace(",", "")) > 500, numbers
        assert page.locator(".job-result table.per-class tr").count() == 7  # header + 6 classes
        assert user.loaded("img[alt='Confusion matrix']") == 1
        user.check_map()
        assert page.get_by_role("link", name="Open the evaluation report").get_attribute("href").endswith("report.html")
        user.shot("evaluate-finished")
        timings["evaluate"] = time.monotonic() - t0

        # ------------------------------------------------------------------ Detection: export boxes, train, detect
        step = "detect"
        from tests.data.make_data import make_objects_scene

        objects, object_labels, *_ = make_objects_scene(tmp_path / "objects", bands=3, size=192, n=36, seed=5)
        user.open("data")
        page.set_input_files("#upload-input", str(objects))
        expect(page.locator(".notice")).to_have_text("Added uploads/objects.tif (raster)")
        page.set_input_files("#upload-input", str(object_labels))
        expect(page.locator(".notice")).to_have_text("Added uploads/objects.gpkg (vector)")
        user.open("export")
        form = page.locator("form[data-stage=export]")
        form.locator("#f-task").select_option("detection")  # the export asks for the task first
        form.locator("[data-field=rasters] input[value='uploads/sample_scene.tif']").uncheck()
        form.locator("[data-field=rasters] input[value='uploads/objects.tif']").check()
        form.locator("#f-labels").select_option("uploads/objects.gpkg")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#f-class_field option')].some(o => o.value === 'kind')"
        )
        form.locator("#f-class_field").select_option("kind")
        form.locator("#f-class_name_field").select_option("")
        for name, value in (("tile_size_x", "64"), ("tile_size_y", "64"), ("stride_x", "32"), ("stride_y", "32"),
                            ("val_fraction", "0.25")):  # fmt: skip
            form.locator(f"#f-{name}").fill(value)
        form.get_by_role("button", name="Export chips").click()
        page.wait_for_selector(".job[data-job='6'] .job-head .badge")  # the new job replaces the page's latest one
        user.wait_job()
        assert int(user.metrics()["held out for validation"]) > 0
        manifest = (workspace / "chips" / "chips-2" / "manifest.json").read_text()
        assert '"task": "detection"' in manifest
        user.shot("detect-export-finished")

        user.follow("Next: train a model →", "train")
        form = page.locator("form[data-stage=train]")
        form.locator("#f-chips").select_option("chips/chips-2")
        # box chips: the detectors are offered, the pixel models are not
        page.wait_for_function("() => document.querySelector('#f-model option[value=unet]').disabled")
        assert not form.locator("#f-model option[value=faster_rcnn_resnet18_fpn]").evaluate("o => o.disabled")
        form.locator("#f-model").select_option("faster_rcnn_resnet18_fpn")
        form.locator("#f-epochs").fill("1")
        form.locator("#f-name").fill("detector")
        form.get_by_role("button", name="Start training").click()
        page.wait_for_selector(".job[data-job='7'] .job-head .badge")
        user.wait_job()
        numbers = user.metrics()
        assert "validation mAP50" in numbers and "COCO mAP@[.5:.95]" in numbers, numbers
        assert page.locator("svg.chart[aria-label='Validation mAP'] polyline").count() == 2
        user.shot("detect-train-finished")

        user.follow("Next: detect objects in a raster →", "detect")
        form = page.locator("form[data-stage=detect]")
        form.locator("#f-model").select_option("models/model-3")
        form.locator("[data-field=rasters] input[value='uploads/sample_scene.tif']").uncheck()
        form.locator("[data-field=rasters] input[value='uploads/objects.tif']").check()
        form.locator("#f-threshold").fill("0.01")
        assert form.locator("#f-out").input_value() == "detections/detections-1.gpkg"
        form.get_by_role("button", name="Detect objects").click()
        page.wait_for_selector(".job[data-job='8'] .job-head .badge")
        user.wait_job()
        found = int(user.metrics()["objects detected"].replace(",", ""))
        assert found > 0
        page.wait_for_selector(".mapview.leaflet-container path.leaflet-interactive")
        boxes = page.locator(".mapview path.leaflet-interactive")
        assert boxes.count() == min(found, 20_000)  # every box drawn over the image, coloured by class
        assert sorted(page.locator(".mapwrap .legend > span").all_inner_texts()) == ["boat", "car"]
        page.locator("input[type=range][aria-label='Minimum score']").fill("100")  # the score slider hides boxes
        page.wait_for_function(f"() => document.querySelectorAll('.mapview path.leaflet-interactive').length < {found}")
        assert page.locator("[data-shown]").inner_text().endswith("with a score of at least 1.00")
        user.shot("detect-finished")

        user.follow("Next: evaluate the detections →", "evaluate")
        form = page.locator("form[data-stage=evaluate_detections]")
        form.locator("#f-prediction").select_option("detections/detections-1.gpkg")
        form.locator("#f-reference").select_option("uploads/objects.gpkg")
        page.wait_for_function(
            "() => [...document.querySelectorAll('form[data-stage=evaluate_detections] #f-class_field option')]"
            ".some(o => o.value === 'kind')"
        )
        form.locator("#f-class_field").select_option("kind")
        form.get_by_role("button", name="Evaluate the detections").click()
        section = page.locator(".stage").nth(1)
        page.wait_for_selector(".job[data-job='9'] .job-head .badge")
        page.wait_for_function(
            "() => { const b = document.querySelectorAll('.stage')[1].querySelector('.job-head .badge');"
            " return b && !/running|queued/.test(b.className); }",
            timeout=JOB_TIMEOUT_MS,
        )
        assert section.locator(".job-head .badge").inner_text() == "finished"
        assert section.locator("table.ap-table tr").count() == 3  # header, car, boat
        assert "AP50" in section.locator("table.ap-table").inner_text()
        assert user.loaded("img[alt='Precision-recall curves']") == 1
        user.shot("detect-evaluate-finished")
        timings["detect"] = time.monotonic() - t0

        # ------------------------------------------------------------------ every step done; a job's own page
        step = "job"
        user.open("runs")
        assert (
            map_accuracy
            in page.locator("#runs-table tr", has_text="Open")
            .filter(has_text="tiny")
            .filter(has_not_text="long run")
            .inner_text()
        )
        assert "mAP50" in page.locator("#runs-table tr", has_text="detector").inner_text()
        page.locator("#jobs-table").get_by_role("link", name="job 2", exact=True).click()
        page.wait_for_selector("body[data-ready='1']")
        expect(page.locator("h1")).to_have_text("Job 2: training")
        expect(page.locator(".job-head .badge")).to_have_text("finished")
        assert page.locator("svg.chart").count() == 2
        page.wait_for_function("() => document.querySelectorAll('nav.path li.done').length === 8")
        user.shot("job-page")
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=shots / f"FAILED-{step}.png", full_page=True)
        raise
    finally:
        context.close()
    watch.assert_clean()
    print(f"\ne2e timings (s, cumulative): { {k: round(v, 1) for k, v in timings.items()} }")
