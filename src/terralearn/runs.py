"""The workspace registry: an embedded SQLite database of chip sets (and, later, runs and jobs)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from terralearn.tasks import DEFAULT_TASK, TASKS

DB_NAME = "terralearn.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chipsets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    path TEXT NOT NULL,
    chips INTEGER NOT NULL,
    train_chips INTEGER NOT NULL,
    val_chips INTEGER NOT NULL,
    bands INTEGER NOT NULL,
    classes INTEGER NOT NULL,
    tile_size TEXT NOT NULL,
    split TEXT NOT NULL,
    seconds REAL NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    pid INTEGER,
    chip_set TEXT,
    chip_set_fingerprint TEXT,
    bands INTEGER,
    pixel_size REAL,
    chip_size INTEGER,
    architecture TEXT,
    backbone TEXT,
    weights TEXT,
    loss TEXT,
    epochs_set INTEGER,
    epochs_run INTEGER,
    best_epoch INTEGER,
    training_seconds REAL,
    model_size_mb REAL,
    accuracy REAL,
    dice REAL,
    mean_iou REAL,
    per_class_iou TEXT,
    baseline_accuracy REAL,
    baseline_mean_iou REAL,
    device TEXT,
    package TEXT,
    run_dir TEXT,
    config TEXT
);
"""

#: Columns added after the first release of the runs table (added to existing databases on open).
_ADDED_RUN_COLUMNS = {
    "eval_accuracy": "REAL",
    "eval_kappa": "REAL",
    "eval_mean_iou": "REAL",
    "eval_map": "TEXT",
    "eval_reference": "TEXT",
    "selection": "TEXT",
    "cv_spread": "REAL",
    # any task (tasks.TASKS): the task, and the value of its headline metric, by which runs of all tasks rank
    "task": "TEXT",
    "headline_metric": "TEXT",
    "headline": "REAL",
    "map50": "REAL",
    "map": "REAL",
    # the latest evaluation of detections made with the run's detector (terralearn evaluate on a .gpkg)
    "eval_ap50": "REAL",
    "eval_ap": "REAL",
}

#: Columns shown by `terralearn runs`, in order.
RUN_COLUMNS = [
    "id", "created", "name", "status", "task", "architecture", "backbone", "bands", "pixel_size", "chip_size", "epochs_set",
    "epochs_run", "best_epoch", "training_seconds", "model_size_mb", "accuracy", "dice", "mean_iou",
    "map50", "map", "headline_metric", "headline", "baseline_accuracy", "selection", "cv_spread", "device", "chip_set_fingerprint", "per_class_iou", "eval_accuracy", "eval_kappa",
    "eval_mean_iou", "eval_ap50", "eval_ap", "package",
]  # fmt: skip


def resolve_workspace(workspace: Path | str | None) -> Path:
    """The workspace folder: the argument, else $TERRALEARN_WORKSPACE, else the current folder."""
    root = Path(workspace or os.environ.get("TERRALEARN_WORKSPACE") or ".").expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


class Registry:
    """Records of a workspace. Each call opens its own connection, so several processes can share it."""

    def __init__(self, workspace: Path | str | None = None) -> None:
        self.root = resolve_workspace(workspace)
        self.path = self.root / DB_NAME
        with closing(self._connect()) as con, con:
            con.executescript(_SCHEMA)
            present = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
            for name, kind in _ADDED_RUN_COLUMNS.items():
                if name not in present:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.row_factory = sqlite3.Row
        return con

    def record_chipset(self, result) -> int:
        m = result.manifest
        with closing(self._connect()) as con, con:
            cur = con.execute(
                "INSERT INTO chipsets (created, path, chips, train_chips, val_chips, bands, classes, tile_size, split,"
                " seconds, manifest) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    str(Path(result.out).resolve()),
                    result.chips,
                    result.train_chips,
                    result.val_chips,
                    m["band_count"],
                    len(m["classes"]),
                    "x".join(str(v) for v in m["chips"]["tile_size"]),
                    m["split"]["method"],
                    result.seconds,
                    json.dumps({k: m[k] for k in ("band_names", "classes", "split", "chips")}),
                ),
            )
            return int(cur.lastrowid)

    def start_run(self, **fields) -> int:
        now = _now()
        fields = {"created": now, "updated": now, "status": "running", "pid": os.getpid(), **fields}
        with closing(self._connect()) as con, con:
            cols = ", ".join(fields)
            marks = ", ".join("?" for _ in fields)
            cur = con.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", [_sql(v) for v in fields.values()])
            return int(cur.lastrowid)

    def update_run(self, run_id: int, **fields) -> None:
        fields = {"updated": _now(), **fields}
        with closing(self._connect()) as con, con:
            assignments = ", ".join(f"{k} = ?" for k in fields)
            con.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*[_sql(v) for v in fields.values()], run_id])

    def record_evaluation(self, run_id: int, metrics: dict, map_path: Path, reference: Path) -> None:
        """Attach a map evaluation (overall accuracy, kappa, mIoU) to the run whose model made the map."""
        self.run(run_id)  # raises RunError for an unknown run
        self.update_run(run_id, eval_accuracy=metrics.get("overall_accuracy"), eval_kappa=metrics.get("kappa"),
                        eval_mean_iou=metrics.get("mean_iou"), eval_map=str(Path(map_path).resolve()),
                        eval_reference=str(Path(reference).resolve()))  # fmt: skip

    def record_detection_evaluation(self, run_id: int, metrics: dict, detections: Path, reference: Path) -> None:
        """Attach a detection evaluation (mAP50, COCO mAP) to the run whose detector found the objects."""
        self.run(run_id)  # raises RunError for an unknown run
        self.update_run(run_id, eval_ap50=metrics.get("map50"), eval_ap=metrics.get("map"),
                        eval_map=str(Path(detections).resolve()), eval_reference=str(Path(reference).resolve()))  # fmt: skip

    def run(self, run_id: int) -> dict:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            from terralearn.errors import RunNotFoundError

            raise RunNotFoundError(f"There is no run {run_id} in the workspace '{self.root}'.",
                           "List the runs with `terralearn runs` (and check --workspace).")  # fmt: skip
        return _live_status(dict(row))

    def runs(self, sort: str = "id", descending: bool = False) -> list[dict]:
        with closing(self._connect()) as con:
            rows = [_live_status(dict(r)) for r in con.execute("SELECT * FROM runs")]
        key = sort if rows and sort in rows[0] else "id"
        return sorted(rows, key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0), reverse=descending)

    def chipsets(self) -> list[dict]:
        with closing(self._connect()) as con:
            return [dict(r) for r in con.execute("SELECT * FROM chipsets ORDER BY id")]


def compare_runs(a: dict, b: dict) -> list[dict]:
    """Two runs side by side: one row per column with both values and, for numbers, b - a."""
    rows = []
    for key in [*RUN_COLUMNS, "loss", "weights"]:
        if key == "id":
            continue
        va, vb = a.get(key), b.get(key)
        diff = None
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        if numeric and key != "chip_size":
            diff = vb - va
        rows.append({"key": key, "a": va, "b": vb, "diff": diff})
    return rows


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _sql(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _live_status(row: dict) -> dict:
    """A run still marked running whose process is gone was killed: show it as interrupted. Its task and headline
    are filled in for runs recorded before tasks were (pixel classification, ranked by mean IoU)."""
    if row.get("status") == "running" and row.get("pid") and not pid_alive(row["pid"]):
        row["status"] = "interrupted"
    task = TASKS.get(row.get("task") or DEFAULT_TASK)
    row["task"] = row.get("task") or DEFAULT_TASK
    if task is not None:
        row["headline_metric"] = row.get("headline_metric") or task.headline
        if row.get("headline") is None:
            row["headline"] = row.get(task.headline)
    return row


def pid_alive(pid: int | None) -> bool:
    """Whether a process runs: not gone, and not a zombie that has ended but is not yet reaped."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished, not yet reaped) is not alive
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
