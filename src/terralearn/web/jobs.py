"""Background jobs: long stages (export, train, classify, evaluate) run in worker processes.

A job is a row in the workspace's SQLite database (the same file as the run registry), so its
status, progress, log and outputs survive a page reload and a restart of whoever started it.
The worker is a separate Python process started without a shell (``python -m terralearn.web.jobs
WORKSPACE JOB_ID``) in its own session: stopping the web server does not stop it. It writes a
heartbeat every few seconds; a job marked running whose process is gone or silent is shown as
interrupted, and an interrupted training job can be resumed from its last checkpoint.

Cancelling sends the worker SIGINT: training then packages the best model so far (as Ctrl-C does
on the command line) and the other stages stop without leaving a half-written output, because
every output is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from contextlib import closing, suppress
from pathlib import Path

from terralearn.config import (
    ClassifyConfig,
    DetectConfig,
    DetectionEvaluateConfig,
    EvaluateConfig,
    ExportConfig,
    StageConfig,
    TrainConfig,
)
from terralearn.errors import JobError, JobNotFoundError, TerraLearnError
from terralearn.io.atomic import json_default
from terralearn.io.runfiles import REPORT_PAGE, report_dir
from terralearn.runs import DB_NAME, Registry, pid_alive, resolve_workspace

#: Stages that run as jobs, with their typed settings. "resume" continues an interrupted training run.
STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    "export": ExportConfig,
    "train": TrainConfig,
    "classify": ClassifyConfig,
    "evaluate": EvaluateConfig,
    "detect": DetectConfig,
    "evaluate_detections": DetectionEvaluateConfig,
}
KINDS = (*STAGE_CONFIGS, "resume")
ACTIVE = ("queued", "running")
HEARTBEAT_S = 2.0
#: A running job whose worker has not written a heartbeat for this long is taken as dead.
STALE_S = 30.0
PROGRESS_EVERY_S = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    pid INTEGER,
    heartbeat REAL,
    config TEXT NOT NULL,
    progress TEXT,
    log TEXT NOT NULL DEFAULT '',
    result TEXT,
    error TEXT,
    fix TEXT,
    run_id INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class JobStore:
    """Job records of one workspace. Every call opens its own connection: safe across processes."""

    def __init__(self, workspace: Path | str | None = None) -> None:
        self.root = resolve_workspace(workspace)
        Registry(self.root)  # creates the database and the run tables the jobs write to
        self.path = self.root / DB_NAME
        with closing(self._connect()) as con, con:
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.row_factory = sqlite3.Row
        return con

    # ------------------------------------------------------------------------------------------ records

    def create(self, kind: str, config: dict) -> int:
        if kind not in KINDS:
            raise JobNotFoundError(f"There is no job kind '{kind}'.", f"Choose one of: {', '.join(KINDS)}.")
        with closing(self._connect()) as con, con:
            cur = con.execute(
                "INSERT INTO jobs (kind, status, created, config, progress) VALUES (?, 'queued', ?, ?, '{}')",
                (kind, _now(), json.dumps(config, default=json_default)),
            )
            return int(cur.lastrowid)

    def update(self, job_id: int, **fields) -> None:
        values = [json.dumps(v, default=json_default) if isinstance(v, (dict, list)) else v for v in fields.values()]
        with closing(self._connect()) as con, con:
            con.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*values, job_id])

    def log(self, job_id: int, line: str) -> None:
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        with closing(self._connect()) as con, con:
            con.execute("UPDATE jobs SET log = log || ? WHERE id = ?", (f"[{stamp}] {line}\n", job_id))

    def get(self, job_id: int) -> dict:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(
                f"There is no job {job_id} in the workspace '{self.root}'.", "Pick a job from the list."
            )
        return self._live(dict(row))

    def list(self, limit: int = 100, kind: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM jobs", []
        if kind:
            query, args = query + " WHERE kind = ?", [kind]
        with closing(self._connect()) as con:
            rows = con.execute(query + " ORDER BY id DESC LIMIT ?", [*args, int(limit)]).fetchall()
        return [self._live(dict(r)) for r in rows]

    def _live(self, job: dict) -> dict:
        """Decode JSON columns; a running job whose worker is gone or silent is interrupted."""
        for key in ("config", "progress", "result"):
            job[key] = json.loads(job[key]) if job.get(key) else ({} if key != "result" else None)
        if job["status"] == "running":
            silent = job["heartbeat"] is not None and time.time() - job["heartbeat"] > STALE_S
            if not pid_alive(job["pid"]) or silent:
                job["status"] = "interrupted"
                self.update(job["id"], status="interrupted", finished=_now())
        elif job["status"] == "queued" and job["pid"] and not pid_alive(job["pid"]):
            job["status"] = "interrupted"
            self.update(job["id"], status="interrupted", finished=_now())
        job["resumable"] = job["status"] in ("interrupted", "cancelled") and job["kind"] in ("train", "resume")
        return job

    def recover(self) -> list[int]:
        """Mark the jobs whose workers died (e.g. with the machine) as interrupted; returns their ids."""
        with closing(self._connect()) as con:
            ids = [r[0] for r in con.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")]
        return [j for j in ids if self.get(j)["status"] == "interrupted"]

    def active(self) -> list[dict]:
        with closing(self._connect()) as con:
            ids = [r[0] for r in con.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")]
        return [job for job in (self.get(j) for j in ids) if job["status"] in ACTIVE]


# ---------------------------------------------------------------------------------------------- launching


def validate(kind: str, settings: dict) -> StageConfig:
    """The typed settings of a job (raises pydantic's ValidationError, which the caller turns into messages)."""
    if kind == "resume":
        raise JobError("A resume job takes a run number, not settings.", "Use resume_training(run_id).")
    if kind not in STAGE_CONFIGS:
        raise JobNotFoundError(f"There is no job kind '{kind}'.", f"Choose one of: {', '.join(STAGE_CONFIGS)}.")
    return STAGE_CONFIGS[kind].model_validate(settings)


def start_job(workspace: Path | str, kind: str, config: StageConfig | dict) -> int:
    """Record a job and start its worker process; returns the job number at once."""
    store = JobStore(workspace)
    settings = config.model_dump(mode="json") if isinstance(config, StageConfig) else dict(config)
    job_id = store.create(kind, settings)
    _spawn(store, job_id)
    return job_id


def resume_training(workspace: Path | str, run_id: int) -> int:
    """Start a job that continues training run ``run_id`` from its last checkpoint."""
    registry = Registry(workspace)
    run = registry.run(run_id)
    if run["status"] == "running":
        raise JobError(f"Run {run_id} is still running.", "Wait for it to finish, or stop it first.")
    if run["status"] != "interrupted":
        raise JobError(f"Run {run_id} is {run['status']}; only an interrupted run can be resumed.",
                       "Start a new training instead.")  # fmt: skip
    return start_job(workspace, "resume", {"run_id": int(run_id)})


#: Workers started by this process, by process id (reaped by ``reap``).
_children: dict[int, subprocess.Popen] = {}


def _spawn(store: JobStore, job_id: int) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path = store.root / "jobs" / f"job-{job_id:04d}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # a list of arguments: no shell ever sees user input
            [sys.executable, "-m", "terralearn.web.jobs", str(store.root), str(job_id)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    _children[proc.pid] = proc
    store.update(job_id, pid=proc.pid)
    reap()


def reap() -> None:
    """Collect workers started by this process that have ended (no zombies)."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def cancel_job(workspace: Path | str, job_id: int) -> dict:
    """Ask a job to stop. Training keeps the best model so far; other stages leave no partial output."""
    store = JobStore(workspace)
    job = store.get(job_id)
    if job["status"] not in ACTIVE:
        raise JobError(f"Job {job_id} is {job['status']}; only a queued or running job can be stopped.", "")
    store.update(job_id, cancel_requested=1)
    store.log(job_id, "Stop requested.")
    if job["pid"]:
        try:
            os.kill(int(job["pid"]), signal.SIGINT)
        except ProcessLookupError:
            store.update(job_id, status="cancelled", finished=_now())
    else:
        store.update(job_id, status="cancelled", finished=_now())
    reap()
    return store.get(job_id)


def wait(workspace: Path | str, job_id: int, timeout: float = 600.0) -> dict:
    """Block until a job leaves the queued/running states (for scripts and tests)."""
    store = JobStore(workspace)
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if job["status"] not in ACTIVE:
            reap()
            return job
        if time.monotonic() > deadline:
            raise JobError(f"Job {job_id} did not finish within {timeout:.0f} s.", "Wait longer or stop it.")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ worker


class _Reporter:
    """Throttled progress and log updates from inside a worker."""

    def __init__(self, store: JobStore, job_id: int, unit: str, area=None) -> None:
        self.store, self.job_id, self.unit = store, job_id, unit
        self.area = area  # pixels done -> km² done, for stages that count pixels
        self.t0 = time.monotonic()
        self.last = 0.0
        self.state: dict = {"unit": unit}

    def phase(self, text: str) -> None:
        self.state.update(phase=text, done=0, total=None)
        self.t0 = time.monotonic()
        self.store.update(self.job_id, progress=self.state)
        self.store.log(self.job_id, text)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and done < total:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed / done * (total - done) if done and total else None
        self.state.update(done=int(done), total=int(total), eta_s=eta)
        if self.area is not None and total:
            self.state.update(km2_done=self.area(done), km2_total=self.area(total))
        self.store.update(self.job_id, progress=self.state)

    def epoch(self, row: dict) -> None:
        if "stage" in row:  # --model auto: a step of the model selection
            from terralearn.train.select import describe

            text = describe(row)
            if text:
                self.state.update(phase=text, done=None, total=None)
                self.store.update(self.job_id, progress=self.state)
                self.store.log(self.job_id, text)
            return
        history = self.state.setdefault("history", [])
        keys = ("epoch", "train_loss", "val_loss", "accuracy", "mean_iou", "dice", "map50", "map", "seconds")
        history.append({k: row.get(k) for k in keys})
        per_epoch = sum(h["seconds"] or 0 for h in history) / len(history)
        remaining = max(0, int(row["epochs"]) - int(row["epoch"]))
        self.state.update(phase="training", done=int(row["epoch"]), total=int(row["epochs"]),
                          best_epoch=row.get("best_epoch"), eta_s=per_epoch * remaining)  # fmt: skip
        self.store.update(self.job_id, progress=self.state, run_id=row.get("run_id"))
        vl = row.get("val_loss")
        if "map50" in row:  # a detector
            scores = f"val mAP50 {_num(row['map50'])}, mAP {_num(row['map'])}"
        else:
            scores = (f"val loss {'-' if vl is None else f'{vl:.4f}'}, accuracy {row.get('accuracy') or 0:.3f}, "
                      f"mIoU {row.get('mean_iou') or 0:.3f}")  # fmt: skip
        self.store.log(
            self.job_id, f"epoch {row['epoch']}/{row['epochs']}: train loss {row['train_loss']:.4f}, {scores}"
        )


def _num(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def _rel(root: Path, path) -> str | None:
    if path is None:
        return None
    path = Path(path).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _run_export(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.export import export

    config = ExportConfig.model_validate(settings)
    rep = _Reporter(store, job_id, "windows")  # candidate chip windows looked at; the chips written are fewer
    rep.phase("Checking the inputs and writing chips")
    result = export(config.model_copy(update={"workspace": store.root}), progress=rep)  # records the chip set
    store.log(job_id, f"Wrote {result.chips} chips ({result.train_chips} training, {result.val_chips} validation) "
                      f"in {result.seconds:.1f} s.")  # fmt: skip
    findings = [f.as_dict() for f in result.findings]  # every finding (error, warning, info), as the page shows them
    return {"out": _rel(store.root, result.out), "chips": result.chips, "train_chips": result.train_chips,
            "val_chips": result.val_chips, "seconds": result.seconds, "findings": findings}  # fmt: skip


def _train_result(store: JobStore, job_id: int, result) -> dict:
    store.update(job_id, run_id=result.run_id)
    store.log(job_id, f"Training {result.status.replace('_', ' ')}.")
    run = Registry(store.root).run(result.run_id)
    report = report_dir(store.root, result.run_id) / REPORT_PAGE
    return {
        "run_id": result.run_id, "status": result.status, "package": _rel(store.root, result.package),
        "report": _rel(store.root, report) if report.exists() else None,
        "accuracy": run.get("accuracy"), "mean_iou": run.get("mean_iou"), "dice": run.get("dice"),
        "baseline_accuracy": run.get("baseline_accuracy"), "seconds": result.seconds,
        "task": run.get("task"), "map50": run.get("map50"), "map": run.get("map"),
        "warnings": list(getattr(result, "warnings", None) or []),
        "weights_note": getattr(result, "weights_note", None),
    }  # fmt: skip


def _run_train(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.train import train

    config = TrainConfig.model_validate(settings)
    rep = _Reporter(store, job_id, "epochs")
    rep.phase("Loading chips, training the baseline forest and finding a learning rate")
    _watch_run(store, job_id, Path(config.out).resolve())
    return _train_result(store, job_id, train(config.model_copy(update={"workspace": store.root}), on_epoch=rep.epoch))


def _run_resume(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.train import train

    rep = _Reporter(store, job_id, "epochs")
    run_id = int(settings["run_id"])
    store.update(job_id, run_id=run_id)
    rep.phase(f"Resuming run {run_id} from its last checkpoint")
    config = TrainConfig.build(resume=run_id, workspace=store.root)
    return _train_result(store, job_id, train(config, on_epoch=rep.epoch))


def _watch_run(store: JobStore, job_id: int, package: Path) -> None:
    """Attach the training run to the job as soon as the registry has it (before the first epoch)."""

    def look() -> None:
        for _ in range(600):
            runs = [r for r in Registry(store.root).runs() if r.get("package") == str(package)]
            if runs:
                store.update(job_id, run_id=max(r["id"] for r in runs))
                return
            time.sleep(1.0)

    threading.Thread(target=look, daemon=True).start()


def _run_classify(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.geo.areas import area_km2
    from terralearn.io.raster import describe_raster
    from terralearn.predict import classify

    config = ClassifyConfig.model_validate(settings)
    grid = describe_raster(config.rasters[0]).grid  # the stack's grid is the first raster's
    rep = _Reporter(store, job_id, "pixels", area=lambda done: area_km2(grid, done / max(grid.width, 1)))
    rep.phase("Classifying")
    result = classify(config, progress=rep)
    area = f" ({result.area_km2:,.1f} km²)" if result.area_km2 else ""
    store.log(job_id, f"Classified {result.pixels:,} pixels{area} in {result.seconds:.1f} s.")
    for w in result.warnings:
        store.log(job_id, f"Warning: {w}")
    return {"out": _rel(store.root, result.out), "qml": _rel(store.root, result.qml),
            "attribute_table": _rel(store.root, result.attribute_table),
            "probability": _rel(store.root, result.probability), "pixels": result.pixels,
            "area_km2": result.area_km2, "seconds": result.seconds, "warnings": list(result.warnings),
            "cog_valid": result.cog_valid, "rasters": [_rel(store.root, r) for r in config.rasters]}  # fmt: skip


def _run_evaluate(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.evaluate import evaluate

    config = EvaluateConfig.model_validate(settings)
    rep = _Reporter(store, job_id, "pixels")
    rep.phase("Comparing the map with the reference")
    result = evaluate(config.model_copy(update={"workspace": store.root}), progress=rep)
    m = result.metrics
    store.log(job_id, f"Overall accuracy {m.get('overall_accuracy', 0):.3f}, kappa {m.get('kappa', 0):.3f}, "
                      f"mean IoU {m.get('mean_iou', 0):.3f}.")  # fmt: skip
    return {"out": _rel(store.root, result.out), "report": _rel(store.root, result.report),
            "confusion_png": _rel(store.root, result.confusion_png),
            "preview_png": _rel(store.root, result.preview_png), "metrics_json": _rel(store.root, result.metrics_json),
            "metrics": m, "warnings": result.warnings, "seconds": result.seconds}  # fmt: skip


def _run_detect(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.predict.detect import detect

    config = DetectConfig.model_validate(settings)
    rep = _Reporter(store, job_id, "tiles")
    rep.phase("Detecting objects")
    result = detect(config, progress=rep)
    counts = ", ".join(f"{n} {name}" for name, n in result.counts.items())
    store.log(job_id, f"Detected {result.detections:,} objects ({counts}) in {result.tiles:,} tiles in "
                      f"{result.seconds:.1f} s.")  # fmt: skip
    for w in result.warnings:
        store.log(job_id, f"Warning: {w}")
    return {"out": _rel(store.root, result.out), "qml": _rel(store.root, result.qml), "counts": result.counts,
            "detections": result.detections, "tiles": result.tiles, "tiles_skipped": result.tiles_skipped,
            "area_km2": result.area_km2, "seconds": result.seconds, "warnings": list(result.warnings),
            "tile_size": result.tile_size, "rasters": [_rel(store.root, r) for r in config.rasters]}  # fmt: skip


def _run_evaluate_detections(store: JobStore, job_id: int, settings: dict) -> dict:
    from terralearn.evaluate.detection_stage import evaluate_detections

    config = DetectionEvaluateConfig.model_validate(settings)
    rep = _Reporter(store, job_id, "objects")
    rep.phase("Matching the detections with the reference objects")
    result = evaluate_detections(config.model_copy(update={"workspace": store.root}))
    m = result.metrics
    store.log(job_id, f"mAP50 {_num(m['map50'])}, COCO mAP {_num(m['map'])} at min IoU {m['min_iou']:g}.")
    return {"out": _rel(store.root, result.out), "report": _rel(store.root, result.report),
            "pr_png": _rel(store.root, result.pr_png), "seams_png": _rel(store.root, result.seams_png),
            "metrics_json": _rel(store.root, result.metrics_json), "warnings": result.warnings,
            "seconds": result.seconds, "prediction": _rel(store.root, config.prediction),
            "metrics": {k: m[k] for k in ("map50", "map", "map75", "min_iou", "per_class", "counts")}}  # fmt: skip


RUNNERS = {
    "export": _run_export,
    "train": _run_train,
    "resume": _run_resume,
    "classify": _run_classify,
    "evaluate": _run_evaluate,
    "detect": _run_detect,
    "evaluate_detections": _run_evaluate_detections,
}


def _heartbeat(store: JobStore, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with suppress(sqlite3.Error):  # a busy database: try again at the next beat
            store.update(job_id, heartbeat=time.time())


def _interrupt(signum, frame):  # pragma: no cover - runs in the worker
    raise KeyboardInterrupt


def run_worker(workspace: Path | str, job_id: int) -> int:
    """The body of a worker process: run one job and record how it ended."""
    store = JobStore(workspace)
    job = store.get(job_id)
    if job["status"] not in ACTIVE:
        return 0
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    store.update(job_id, status="running", started=_now(), pid=os.getpid(), heartbeat=time.time())
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(store, job_id, stop), daemon=True).start()
    status, code = "finished", 0
    try:
        out = job["config"].get("out")
        if out:  # outputs go into workspace folders such as maps/ that may not exist yet
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        result = RUNNERS[job["kind"]](store, job_id, job["config"])
        cancelled = store.get(job_id)["cancel_requested"]
        if cancelled or (job["kind"] in ("train", "resume") and result.get("status") == "interrupted"):
            status = "cancelled"
        store.update(job_id, result=result)
    except KeyboardInterrupt:
        status, code = "cancelled", 130
        store.log(job_id, "Stopped; nothing half-written was left behind.")
    except TerraLearnError as exc:
        status, code = "failed", 2
        store.update(job_id, error=exc.message, fix=exc.fix)
        store.log(job_id, f"Error: {exc.message}" + (f" Fix: {exc.fix}" if exc.fix else ""))
    except Exception as exc:
        status, code = "failed", 1
        store.update(job_id, error=f"Unexpected error: {type(exc).__name__}: {exc}",
                     fix="Check the inputs; the job log has the details. Report it if the inputs look right.")  # fmt: skip
        store.log(job_id, traceback.format_exc())
    finally:
        stop.set()
    store.update(job_id, status=status, finished=_now(), heartbeat=time.time())
    return code


if __name__ == "__main__":  # pragma: no cover - the worker process's entry point
    sys.exit(run_worker(sys.argv[1], int(sys.argv[2])))
