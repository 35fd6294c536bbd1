"""Safe access to the files of one workspace folder, for the web app.

Every path the web app receives is workspace-relative text. ``WorkspaceFiles.resolve`` turns
it into a real path or refuses it: absolute paths, ``..``, symlinks leading out of the
workspace, NUL bytes, the registry database and hidden names never get through. Listing
and searching hide the same things, plus the half-written temporary files of atomic writes
(``.NAME.tmp-*``, see ``io/atomic.py``). Uploads are checked and placed by ``web/uploads.py``.
"""

from __future__ import annotations

import datetime as _dt
import os
import stat
from pathlib import Path

from terralearn.errors import ConfigError, WorkspacePathError, WorkspacePathMissingError
from terralearn.web.kinds import KINDS, detect_kind
from terralearn.web.uploads import DRIVE, receive, upload_name

#: Files of the workspace's registry, never served or listed.
INTERNAL_NAMES = frozenset({"terralearn.db", "terralearn.db-wal", "terralearn.db-shm", "terralearn.db-journal"})
#: The held-out validation polygons that `terralearn export` writes into a chip set.
HELD_OUT = "validation.gpkg"

_FIND_MAX_VISITS = 50_000


def is_hidden_name(name: str) -> bool:
    """Names never shown nor served: dotfiles (including atomic-write temporaries) and the registry's files."""
    return name.startswith(".") or name.lower() in INTERNAL_NAMES


def _path_error(exc: BaseException) -> type[WorkspacePathError]:
    """The error class for an OS error on a workspace path: "missing" (HTTP 404) when nothing is there."""
    return WorkspacePathMissingError if isinstance(exc, FileNotFoundError) else WorkspacePathError


class WorkspaceFiles:
    """The files of one workspace folder, reached only through workspace-relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    # paths

    def resolve(self, rel: str, *, must_exist: bool = True) -> Path:
        """The real path of workspace-relative ``rel`` ("" or "." is the workspace itself), or WorkspacePathError."""
        if not isinstance(rel, str):
            raise WorkspacePathError(
                f"The path {rel!r} is not text.", "Give a path relative to the workspace, e.g. 'data/image.tif'."
            )
        shown = rel if len(rel) <= 200 else rel[:200] + "..."
        fix = "Give a path relative to the workspace folder, e.g. 'data/image.tif', and pick files from the list."
        if "\x00" in rel:
            raise WorkspacePathError(f"The path {shown!r} contains a NUL byte.", fix)
        if "\\" in rel:
            raise WorkspacePathError(
                f"The path {shown!r} contains a backslash.", "Separate folders with '/', e.g. 'data/image.tif'."
            )
        if rel.startswith("/") or DRIVE.match(rel):
            raise WorkspacePathError(
                f"The path {shown!r} is absolute; only files inside the workspace '{self.root}' can be used.", fix
            )
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise WorkspacePathError(f"The path {shown!r} goes up with '..', out of the workspace.", fix)
        self._refuse_hidden(parts, shown)
        candidate = self.root.joinpath(*parts)
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops, names too long
            raise _path_error(exc)(f"The path {shown!r} cannot be resolved ({exc}).", fix) from None
        if real != self.root and not real.is_relative_to(self.root):
            raise WorkspacePathError(
                f"The path {shown!r} leads outside the workspace '{self.root}' (through a symbolic link).",
                "Copy the file into the workspace instead of linking to it.",
            )
        self._refuse_hidden(real.relative_to(self.root).parts, shown)
        if must_exist and not _exists(real):
            raise WorkspacePathMissingError(
                f"'{shown}' does not exist in the workspace '{self.root}'.",
                "Pick an existing file from the workspace list (it may have been moved or deleted).",
            )
        return real

    def _refuse_hidden(self, parts, shown: str) -> None:
        for part in parts:
            if is_hidden_name(part):
                raise WorkspacePathError(
                    f"The path {shown!r} names {part!r}, which is hidden or internal to TerraLearn.",
                    "Pick a visible file; the registry database and names starting with '.' are not served.",
                )

    def relative(self, path: Path) -> str:
        """``path`` as a workspace-relative posix path ("" for the workspace itself)."""
        path = Path(path)
        if not path.is_absolute():
            path = self.root / path
        path = Path(os.path.normpath(path))  # relative_to is lexical: no '..' may remain
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            try:
                rel = path.resolve().relative_to(self.root)
            except (ValueError, OSError, RuntimeError):
                raise WorkspacePathError(
                    f"'{path}' is not inside the workspace '{self.root}'.",
                    "Write outputs inside the workspace folder.",
                ) from None
        text = rel.as_posix()
        return "" if text == "." else text

    def _inside(self, path: Path) -> bool:
        """Whether a symlink's target stays inside the workspace, exists, and is not hidden."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return False
        if real == self.root:
            return False
        if not real.is_relative_to(self.root):
            return False
        return not any(is_hidden_name(p) for p in real.relative_to(self.root).parts)

    # kinds, listing, search

    def kind_of(self, path: Path) -> str:
        """One of ``KINDS`` (folder, raster, map, vector, chipset, package, report, image, other)."""
        return detect_kind(path)

    def _entry(self, path: Path, rel: str, st: os.stat_result) -> dict:
        is_dir = stat.S_ISDIR(st.st_mode)
        return {
            "name": path.name,
            "path": rel,
            "kind": self.kind_of(path),
            "is_dir": is_dir,
            "size": None if is_dir else st.st_size,
            "modified": _dt.datetime.fromtimestamp(st.st_mtime, _dt.UTC).isoformat(timespec="seconds"),
        }

    def _visible(self, entry: os.DirEntry) -> os.stat_result | None:
        """The stat of a listable entry (following a symlink that stays inside), else None."""
        if is_hidden_name(entry.name):
            return None
        try:
            if entry.is_symlink() and not self._inside(Path(entry.path)):
                return None
            return entry.stat(follow_symlinks=True)
        except OSError:
            return None

    def listdir(self, rel: str = "") -> list[dict]:
        """Entries of a workspace folder: {name, path, kind, is_dir, size, modified}; folders first, then by name."""
        folder = self.resolve(rel)
        if not folder.is_dir():
            raise WorkspacePathError(f"'{rel}' is a file, not a folder.", "Open the folder that holds it.")
        base = self.relative(folder)
        entries = []
        try:
            scan = list(os.scandir(folder))
        except OSError as exc:
            raise _path_error(exc)(
                f"The folder '{rel}' cannot be listed ({exc.strerror}).", "Check its permissions."
            ) from None
        for entry in scan:
            st = self._visible(entry)
            if st is None:
                continue
            path = f"{base}/{entry.name}" if base else entry.name
            entries.append(self._entry(Path(entry.path), path, st))
        entries.sort(key=lambda e: (not e["is_dir"], e["name"].lower(), e["name"]))
        return entries

    def find(self, kinds: set[str], limit: int = 500) -> list[dict]:
        """Entries of the given kinds anywhere in the workspace, newest first (at most ``limit``).

        Does not look inside chip sets (except for their held-out validation polygons) and packages, hidden
        folders, or folders reached by a symlink.
        """
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ConfigError(f"Unknown kind(s) {sorted(unknown)} to find.", f"Choose from {', '.join(KINDS)}.")
        found: list[dict] = []
        stack = [(self.root, "")]
        visits = 0
        while stack and visits < _FIND_MAX_VISITS:
            folder, base = stack.pop()
            try:
                scan = list(os.scandir(folder))
            except OSError:
                continue
            for entry in scan:
                visits += 1
                st = self._visible(entry)
                if st is None:
                    continue
                rel = f"{base}/{entry.name}" if base else entry.name
                path = Path(entry.path)
                kind = self.kind_of(path)
                if kind in kinds:
                    found.append(self._entry(path, rel, st))
                if kind == "folder" and not entry.is_symlink():
                    stack.append((path, rel))
                held_out = path / HELD_OUT
                if kind == "chipset" and "vector" in kinds and held_out.is_file() and not held_out.is_symlink():
                    # the chip set's held-out validation polygons: the honest reference for `evaluate`
                    found.append(self._entry(held_out, f"{rel}/{HELD_OUT}", held_out.stat()))
        found.sort(key=lambda e: (e["modified"], e["path"]), reverse=True)
        return found[:limit]

    # uploads

    def save_upload(self, stream, filename: str, *, subdir: str = "uploads", max_bytes: int) -> Path:
        """Stream an upload into ``subdir`` under a safe, unused name after checking its content; return its path.

        A zipped shapefile is extracted into a folder named after the zip, and the path of its
        ``.shp`` is returned (of the folder when it holds several shapefiles).
        """
        name = upload_name(filename)
        folder = self.resolve(subdir, must_exist=False)
        return receive(stream, filename, name, folder, subdir=subdir, max_bytes=max_bytes)


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except OSError:
        return False
    return True
