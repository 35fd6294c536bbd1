"""The workspace registry: an embedded SQLite database of chip sets (and, later, runs and jobs)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

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
"""


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

    def chipsets(self) -> list[dict]:
        with closing(self._connect()) as con:
            return [dict(r) for r in con.execute("SELECT * FROM chipsets ORDER BY id")]
