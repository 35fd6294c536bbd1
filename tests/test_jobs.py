"""Background jobs: worker processes, records in SQLite, cancel, interruption, resume, two at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from terralearn.config import ClassifyConfig, ExportConfig, TrainConfig
from terralearn.errors import JobError
from terralearn.export import export
from terralearn.io.package import load_package
from terralearn.runs import Registry
from terralearn.web import jobs
from tests.data.make_data import make_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("jobs-scene"))


def export_settings(scene, out, **kw):
    raster, labels, _ = scene
    return ExportConfig.build(rasters=[raster], labels=labels, class_field="code", class_name_field="name",
                              tile_size_x=16, tile_size_y=16, stride_x=8, stride_y=8, out=out, val_fraction=0.5, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def chips(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs-chips") / "chips"
    export(export_settings(scene, out))
    return out


def long_training(chips, tmp_path, epochs_done: int):
    """Start a 400-epoch training job and return once it has run ``epochs_done`` epochs."""
    config = TrainConfig.build(chips=chips, out=tmp_path / "pkg", model="tiny", epochs=400, patience=0,
                               baseline=False, learning_rate=0.01)  # fmt: skip
    job_id = jobs.start_job(tmp_path, "train", config)
    store = jobs.JobStore(tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and (store.get(job_id)["progress"].get("done") or 0) < epochs_done:
        time.sleep(0.1)
    return job_id, store


def test_two_jobs_at_once_in_worker_processes(scene, tmp_path):
    """Two exports run together in their own processes; both finish and the registry stays whole."""
    ids = [jobs.start_job(tmp_path, "export", export_settings(scene, tmp_path / f"chips-{i}")) for i in (1, 2)]
    pids = [jobs.JobStore(tmp_path).get(i)["pid"] for i in ids]
    assert pids[0] != pids[1] and os.getpid() not in pids
    done = [jobs.wait(tmp_path, i, timeout=240) for i in ids]
    for job in done:
        assert job["status"] == "finished", job["log"]
        assert job["result"]["chips"] > 0 and "Wrote" in job["log"]
        assert job["progress"]["unit"] == "windows" and job["progress"]["done"] == job["progress"]["total"]
    assert {j["result"]["out"] for j in done} == {"chips-1", "chips-2"}
    assert len(Registry(tmp_path).chipsets()) == 2
    with sqlite3.connect(tmp_path / "terralearn.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failed_job_keeps_the_message_and_the_fix(scene, tmp_path):
    raster, labels, _ = scene
    settings = {**export_settings(scene, tmp_path / "chips").model_dump(mode="json"), "class_field": "nope"}
    store = jobs.JobStore(tmp_path)
    job_id = store.create("export", settings)
    assert jobs.run_worker(tmp_path, job_id) == 2  # run in this process: the same code as the worker
    job = store.get(job_id)
    assert job["status"] == "failed" and "'nope'" in job["error"] and job["fix"]
    assert not (tmp_path / "chips").exists()
    assert "Error:" in job["log"]


def test_training_job_reports_epochs_curves_and_time_left_then_classify_in_km2(scene, chips, tmp_path):
    store = jobs.JobStore(tmp_path)
    config = TrainConfig.build(chips=chips, out=tmp_path / "pkg", model="tiny", epochs=3, baseline=False,
                               learning_rate=0.01)  # fmt: skip
    job_id = store.create("train", config.model_dump(mode="json"))
    assert jobs.run_worker(tmp_path, job_id) == 0
    job = store.get(job_id)
    assert job["status"] == "finished" and job["run_id"] == job["result"]["run_id"] == 1
    history = job["progress"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(h["train_loss"] > 0 and 0 <= h["accuracy"] <= 1 for h in history)
    assert job["progress"]["eta_s"] == 0 and job["progress"]["total"] == 3
    assert job["log"].count("epoch ") >= 3
    assert job["result"]["report"].endswith("report.html") and (tmp_path / job["result"]["report"]).exists()
    assert load_package(tmp_path / "pkg")[0]["epochs_run"] == 3

    # classifying with it reports progress in pixels and km² (64 x 48 pixels of 10 m = 0.3072 km²)
    settings = ClassifyConfig.build(model=tmp_path / "pkg", rasters=[scene[0]], out=tmp_path / "maps" / "map.tif")
    classify_id = store.create("classify", settings.model_dump(mode="json"))
    assert jobs.run_worker(tmp_path, classify_id) == 0, store.get(classify_id)["log"]
    progress = store.get(classify_id)["progress"]
    assert progress["unit"] == "pixels" and progress["done"] == progress["total"] == 64 * 48
    assert progress["km2_total"] == pytest.approx(0.3072) and progress["km2_done"] == pytest.approx(0.3072)
    assert (tmp_path / "maps" / "map.tif").is_file()  # the output folder was made


def test_cancel_keeps_the_best_model_and_the_run_resumes(chips, tmp_path):
    job_id, store = long_training(chips, tmp_path, epochs_done=2)
    jobs.cancel_job(tmp_path, job_id)
    job = jobs.wait(tmp_path, job_id, timeout=60)
    assert job["status"] == "cancelled" and job["resumable"]
    stopped_at = load_package(tmp_path / "pkg")[0]["epochs_run"]
    assert 2 <= stopped_at < 400 and job["result"]["package"] == "pkg"
    assert Registry(tmp_path).run(job["run_id"])["status"] == "interrupted"
    with pytest.raises(JobError, match="only a queued or running job"):
        jobs.cancel_job(tmp_path, job_id)

    # finish quickly: two more epochs than were run
    run_dir = tmp_path / "runs" / f"run-{job['run_id']:04d}"
    saved = json.loads((run_dir / "config.json").read_text())
    epoch = json.loads((run_dir / "checkpoint.json").read_text())["epoch"]
    (run_dir / "config.json").write_text(json.dumps({**saved, "epochs": epoch + 2}))
    resumed = jobs.wait(tmp_path, jobs.resume_training(tmp_path, job["run_id"]), timeout=120)
    assert resumed["status"] == "finished", resumed["log"]
    assert resumed["kind"] == "resume" and resumed["result"]["run_id"] == job["run_id"]
    assert [h["epoch"] for h in resumed["progress"]["history"]] == [epoch + 1, epoch + 2]
    assert Registry(tmp_path).run(job["run_id"])["status"] == "finished"
    with pytest.raises(JobError, match="only an interrupted run"):
        jobs.resume_training(tmp_path, job["run_id"])


def test_jobs_whose_worker_died_are_marked_interrupted(tmp_path):
    """After a restart (or a crash), running jobs without a live, beating worker show as interrupted."""
    store = jobs.JobStore(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = store.create("train", {"chips": "x", "out": "y"})
    store.update(gone, status="running", pid=dead.pid, heartbeat=time.time())
    silent = store.create("classify", {})
    store.update(silent, status="running", pid=os.getpid(), heartbeat=time.time() - 3600)
    alive = store.create("export", {})
    store.update(alive, status="running", pid=os.getpid(), heartbeat=time.time())
    assert sorted(store.recover()) == [gone, silent]
    assert store.get(gone)["status"] == "interrupted" and store.get(gone)["resumable"]
    assert store.get(silent)["status"] == "interrupted" and not store.get(silent)["resumable"]
    assert store.get(alive)["status"] == "running"
    assert [j["id"] for j in store.active()] == [alive]


def test_a_killed_training_worker_leaves_an_interrupted_resumable_job(chips, tmp_path):
    job_id, store = long_training(chips, tmp_path, epochs_done=1)
    os.kill(store.get(job_id)["pid"], signal.SIGKILL)
    job = jobs.wait(tmp_path, job_id, timeout=30)
    assert job["status"] == "interrupted" and job["resumable"] and job["run_id"] == 1
    assert Registry(tmp_path).run(1)["status"] == "interrupted"
    assert not (tmp_path / "pkg").exists()  # killed, not stopped: no package, but a checkpoint to resume from
    assert (tmp_path / "runs" / "run-0001" / "checkpoint.json").exists()


def test_unknown_jobs_and_kinds_are_refused(tmp_path):
    store = jobs.JobStore(tmp_path)
    with pytest.raises(JobError, match="no job 42"):
        store.get(42)
    with pytest.raises(JobError, match="no job kind 'bake'"):
        store.create("bake", {})
