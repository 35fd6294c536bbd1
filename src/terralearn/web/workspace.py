"""Safe access to the files of one workspace folder, for the web app.

Every path the web app receives is workspace-relative text. ``WorkspaceFiles.resolve`` turns
it into a real path or refuses it: absolute paths, ``..``, symlinks leading out of the
workspace, NUL bytes, the registry database and hidden names never get through. Listing
and searching hide the same things, plus the half-written temporary files of atomic writes
(``.NAME.tmp-*``, see ``io/atomic.py``). Uploads are streamed to a hidden temporary file
with a size limit, checked by content (not only by extension), and renamed into place
without ever overwriting an existing file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
import stat
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path, PurePosixPath

import pyogrio

from terralearn.errors import (
    ConfigError,
    InputFileError,
    UploadError,
    UploadTooLargeError,
    WorkspacePathError,
    WorkspacePathMissingError,
)
from terralearn.io.raster import CLASS_TABLE_TAG, open_raster

#: Files of the workspace's registry, never served or listed.
INTERNAL_NAMES = frozenset({"terralearn.db", "terralearn.db-wal", "terralearn.db-shm", "terralearn.db-journal"})

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".img", ".vrt", ".jp2"})
VECTOR_SUFFIXES = frozenset({".gpkg", ".geojson", ".shp", ".fgb"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
REPORT_SUFFIXES = frozenset({".html", ".htm"})
KINDS = ("folder", "raster", "map", "vector", "chipset", "package", "report", "image", "other")

#: Extensions accepted by ``save_upload``.
UPLOAD_SUFFIXES = (".tif", ".tiff", ".gpkg", ".geojson", ".json", ".zip")
#: Shapefile side-car extensions extracted from an uploaded zip; anything else in the zip is skipped.
SHAPEFILE_PARTS = frozenset({".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".xml"})
GEOJSON_TYPES = frozenset(
    {"FeatureCollection", "Feature", "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
     "MultiPolygon", "GeometryCollection"}
)  # fmt: skip

_CHUNK = 1 << 20
_MAX_ZIP_MEMBERS = 10_000
_FIND_MAX_VISITS = 50_000
_JSON_FULL_PARSE = 64 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_GEOJSON_TYPE = re.compile(rb'"type"\s*:\s*"(' + b"|".join(t.encode() for t in sorted(GEOJSON_TYPES)) + rb')"')

#: The held-out validation polygons that `terralearn export` writes into a chip set.
HELD_OUT = "validation.gpkg"


def is_hidden_name(name: str) -> bool:
    """Names never shown nor served: dotfiles (including atomic-write temporaries) and the registry's files."""
    return name.startswith(".") or name.lower() in INTERNAL_NAMES


# --- kinds -----------------------------------------------------------------------------------------------------------

_kind_cache: OrderedDict[tuple, str] = OrderedDict()
_kind_lock = threading.Lock()
_KIND_CACHE_SIZE = 4096


def detect_kind(path: Path) -> str:
    """What a file or folder is, from its name, a few header bytes or a zip's directory (never a full read).

    One of ``KINDS``. Results are cached by (path, modification time, size).
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return "other"
    key = (str(path), st.st_mtime_ns, st.st_size, stat.S_ISDIR(st.st_mode))
    with _kind_lock:
        kind = _kind_cache.get(key)
        if kind is not None:
            _kind_cache.move_to_end(key)
            return kind
    kind = _detect_kind(path, stat.S_ISDIR(st.st_mode))
    with _kind_lock:
        _kind_cache[key] = kind
        while len(_kind_cache) > _KIND_CACHE_SIZE:
            _kind_cache.popitem(last=False)
    return kind


def _detect_kind(path: Path, is_dir: bool) -> str:
    if is_dir:
        if (path / "manifest.json").is_file() and (path / "tiles.gpkg").is_file():
            return "chipset"
        if (path / "model.json").is_file() and (path / "model.safetensors").is_file():
            return "package"
        return "folder"
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "map" if suffix in (".tif", ".tiff") and _has_class_table(path) else "raster"
    if suffix in VECTOR_SUFFIXES:
        return "vector"
    if suffix == ".json":
        return "vector" if _looks_like_geojson(path) else "other"
    if suffix == ".zip":
        return _zip_kind(path)
    if suffix in REPORT_SUFFIXES:
        return "report"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "other"


def _has_class_table(path: Path) -> bool:
    try:
        with open_raster(path) as src:
            return bool(src.tags().get(CLASS_TABLE_TAG))
    except (InputFileError, OSError):
        return False


def _looks_like_geojson(path: Path, head_bytes: int = 1 << 16) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(head_bytes)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and _GEOJSON_TYPE.search(head) is not None


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "other"
    if "model.json" in names and "model.safetensors" in names:
        return "package"
    return "vector" if any(n.lower().endswith(".shp") for n in names) else "other"


# --- the workspace ---------------------------------------------------------------------------------------------------


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
        if rel.startswith("/") or _DRIVE.match(rel):
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
        name = sanitize_filename(filename)
        suffix = Path(name).suffix.lower()
        name = Path(name).stem + suffix
        if suffix not in UPLOAD_SUFFIXES:
            raise UploadError(
                f"'{filename}' has the extension {suffix or '(none)'!r}, which TerraLearn does not take as an upload.",
                f"Upload one of: {', '.join(UPLOAD_SUFFIXES)} (GeoTIFF, GeoPackage, GeoJSON, zipped shapefile).",
            )
        folder = self.resolve(subdir, must_exist=False)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UploadError(
                f"The upload folder '{subdir}' cannot be created ({exc.strerror}).",
                "Choose another folder of the workspace, or remove the file of that name.",
            ) from None
        tmp = folder / f".{Path(name).stem}.tmp-{secrets.token_hex(6)}{suffix}"
        try:
            size = _stream_to(stream, tmp, max_bytes, filename)
            if size == 0:
                raise UploadError(f"The upload '{filename}' is empty.", "Choose the file again; it has 0 bytes.")
            _check_content(tmp, suffix, filename)
            if suffix == ".zip":
                return _extract_shapefile_zip(tmp, folder, Path(name).stem, filename, max_bytes)
            return _place_file(tmp, folder, name)
        finally:
            _remove_quietly(tmp)
            for extra in ("-wal", "-shm", "-journal", ".aux.xml"):
                _remove_quietly(Path(str(tmp) + extra))


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except OSError:
        return False
    return True


def _remove_quietly(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def sanitize_filename(filename: str, max_length: int = 120) -> str:
    """A safe file name from a user's: base name only, [A-Za-z0-9._-], no leading dots, never empty."""
    base = re.split(r"[/\\]", str(filename or ""))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = stem.strip("._-") or "upload"
    ext = ext.strip("_-")[:16]
    return stem[: max(1, max_length - len(ext) - 1)] + (f".{ext}" if ext else "")


def _stream_to(stream, tmp: Path, max_bytes: int, filename: str) -> int:
    size = 0
    with open(tmp, "xb") as out:
        while True:
            block = stream.read(_CHUNK)
            if not block:
                break
            size += len(block)
            if size > max_bytes:
                raise UploadTooLargeError(
                    f"The upload '{filename}' is larger than the limit of {_mb(max_bytes)}.",
                    "Clip or compress the file (e.g. gdal_translate -co COMPRESS=DEFLATE), or copy it into the "
                    "workspace folder directly instead of uploading it.",
                )
            out.write(block)
    return size


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def sniff(head: bytes) -> str:
    """What a file's first bytes say it is, in words (used in upload messages)."""
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "a TIFF image"
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return "a BigTIFF image"
    if head.startswith(b"SQLite format 3\x00"):
        return "a GeoPackage" if head[68:72] in (b"GPKG", b"GP10", b"GP11") else "an SQLite database (not a GeoPackage)"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "a zip archive"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    if head.startswith(b"Rar!") or head.startswith(b"7z\xbc\xaf"):
        return "a RAR or 7-Zip archive"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "JSON text"
    if text[:1] == b"<":
        return "an XML or HTML document"
    return "a text file" if _is_text(head) else "unknown binary data"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


_EXPECTED = {
    ".tif": ({"a TIFF image", "a BigTIFF image"}, "a GeoTIFF"),
    ".tiff": ({"a TIFF image", "a BigTIFF image"}, "a GeoTIFF"),
    ".gpkg": ({"a GeoPackage"}, "a GeoPackage"),
    ".geojson": ({"JSON text"}, "GeoJSON"),
    ".json": ({"JSON text"}, "GeoJSON"),
    ".zip": ({"a zip archive"}, "a zipped shapefile"),
}
_REAL_SUFFIX = {
    "a TIFF image": ".tif",
    "a BigTIFF image": ".tif",
    "a GeoPackage": ".gpkg",
    "a zip archive": ".zip",
    "JSON text": ".geojson",
}


def _check_content(tmp: Path, suffix: str, filename: str) -> None:
    with open(tmp, "rb") as fh:
        head = fh.read(100)
    looks = sniff(head)
    allowed, wanted = _EXPECTED[suffix]
    if looks not in allowed:
        real = _REAL_SUFFIX.get(looks)
        fix = (
            f"Give the file its real extension ({real}) and upload it again."
            if real
            else f"Upload {wanted}; export the data again from your GIS in that format."
        )
        raise UploadError(f"'{filename}' is named {suffix} but its content looks like {looks}, not {wanted}.", fix)
    if suffix in (".tif", ".tiff"):
        _check_raster(tmp, filename)
    elif suffix == ".gpkg":
        _check_vector(tmp, filename, "GeoPackage")
    elif suffix in (".geojson", ".json"):
        _check_geojson(tmp, filename)


def _check_raster(tmp: Path, filename: str) -> None:
    from rasterio.windows import Window

    try:
        with open_raster(tmp) as src:
            src.read(1, window=Window(0, 0, 1, 1))
    except Exception as exc:  # GDAL reports damaged files with several error types
        raise UploadError(
            f"'{filename}' looks like a TIFF but cannot be read as a raster ({_first_line(exc)}).",
            "The file may be truncated or damaged: export it again as GeoTIFF and upload it again.",
        ) from None


def _check_vector(path: Path, filename: str, what: str) -> None:
    try:
        layers = pyogrio.list_layers(path)
        if len(layers) == 0:
            raise ValueError("it has no layers")
        pyogrio.read_info(path, layer=str(layers[0][0]))
    except Exception as exc:  # pyogrio raises several error types for unreadable data
        raise UploadError(
            f"'{filename}' cannot be read as a {what} vector layer ({_first_line(exc)}).",
            f"The file may be truncated or damaged: export it again as {what} from your GIS.",
        ) from None


def _check_geojson(tmp: Path, filename: str) -> None:
    kind = None
    size = tmp.stat().st_size
    if size <= _JSON_FULL_PARSE:
        try:
            with open(tmp, encoding="utf-8-sig") as fh:
                doc = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UploadError(
                f"'{filename}' is not valid JSON ({_first_line(exc)}).",
                "Export the layer again as GeoJSON; the file may be truncated.",
            ) from None
        kind = doc.get("type") if isinstance(doc, dict) else None
    else:  # too big to parse here at once: look at the head, then let GDAL stream it
        with open(tmp, "rb") as fh:
            match = _GEOJSON_TYPE.search(fh.read(1 << 16))
        kind = match.group(1).decode() if match else None
    if kind not in GEOJSON_TYPES:
        raise UploadError(
            f"'{filename}' is JSON but not GeoJSON: its \"type\" is {kind!r}, not one of FeatureCollection, Feature "
            "or a geometry type.",
            "Upload a GeoJSON layer (export it from your GIS as GeoJSON).",
        )
    _check_vector(tmp, filename, "GeoJSON")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    candidate = folder / f"{stem}{suffix}"
    n = 0
    while os.path.lexists(candidate):
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def _place_file(tmp: Path, folder: Path, name: str) -> Path:
    """Move the checked temporary file to an unused name; a hard link refuses to replace a file made meanwhile."""
    while True:
        final = _free_name(folder, Path(name).stem, Path(name).suffix)
        try:
            os.link(tmp, final)
        except FileExistsError:
            continue
        except OSError:  # file systems without hard links
            if os.path.lexists(final):
                continue
            os.rename(tmp, final)
            return final
        tmp.unlink()
        return final


def _member_parts(name: str, filename: str) -> list[str]:
    """The path of a zip member as safe components, or UploadError for names that could escape the folder."""
    bad = (
        "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or _DRIVE.match(name) is not None
        or ".." in name.split("/")
    )
    if bad:
        raise UploadError(
            f"The zip '{filename}' holds a member named {name!r}, which would be written outside its folder.",
            "Zip the shapefile's files again with plain relative names (e.g. select the files and compress them).",
        )
    return [p for p in name.split("/") if p not in ("", ".")]


def _extract_shapefile_zip(tmp: Path, folder: Path, stem: str, filename: str, max_bytes: int) -> Path:
    cap = max(8 * max_bytes, 64 << 20)
    try:
        zf = zipfile.ZipFile(tmp)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadError(
            f"'{filename}' is not a readable zip archive ({_first_line(exc)}).", "Zip the shapefile again."
        ) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_ZIP_MEMBERS:
            raise UploadError(
                f"The zip '{filename}' holds {len(infos)} files; a zipped shapefile holds a handful.",
                "Zip only the shapefile's files (.shp, .shx, .dbf, .prj, .cpg).",
            )
        wanted = []
        total = 0
        for info in infos:
            parts = _member_parts(info.filename, filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadError(
                    f"The zip '{filename}' holds a symbolic link ({info.filename!r}), which is not accepted.",
                    "Zip the shapefile's real files, not links to them.",
                )
            if info.is_dir() or not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            if PurePosixPath(parts[-1]).suffix.lower() not in SHAPEFILE_PARTS:
                continue
            total += info.file_size
            if total > cap:
                raise UploadError(
                    f"The zip '{filename}' unpacks to more than {_mb(cap)}.",
                    "Upload a smaller layer, or copy the shapefile into the workspace folder directly.",
                )
            wanted.append((info, [sanitize_filename(p) for p in parts]))
        shapefiles = _complete_shapefiles([parts for _, parts in wanted])
        if not shapefiles:
            model = {"model.json", "model.safetensors"} <= set(zf.namelist())
            raise UploadError(
                f"The zip '{filename}' holds no complete shapefile (a .shp with its .shx and .dbf)"
                + (": it looks like a TerraLearn model package." if model else "."),
                "Zip the shapefile's .shp, .shx, .dbf and .prj together and upload that zip."
                if not model
                else "Copy model packages into the workspace folder directly; uploads take data layers.",
            )
        staging = folder / f".{stem}.tmp-{secrets.token_hex(6)}"
        staging.mkdir()
        try:
            written = 0
            for info, parts in wanted:
                target = staging.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(target):
                    raise UploadError(
                        f"The zip '{filename}' holds two files that both become '{'/'.join(parts)}'.",
                        "Zip one copy of each of the shapefile's files.",
                    )
                with zf.open(info) as src, open(target, "xb") as dst:
                    while block := src.read(_CHUNK):
                        written += len(block)
                        if written > cap:  # the sizes in a zip's directory can lie
                            raise UploadError(
                                f"The zip '{filename}' unpacks to more than {_mb(cap)}.",
                                "Upload a smaller layer, or copy the shapefile into the workspace folder directly.",
                            )
                        dst.write(block)
            for shp in shapefiles:
                _check_vector(staging.joinpath(*shp), filename, "shapefile")
            final = _place_folder(staging, folder, stem)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final.joinpath(*shapefiles[0]) if len(shapefiles) == 1 else final


def _complete_shapefiles(members: list[list[str]]) -> list[list[str]]:
    """The .shp members whose .shx and .dbf (same folder and stem, any case) are present."""
    present = {"/".join(parts).lower() for parts in members}
    found = []
    for parts in members:
        name = "/".join(parts)
        if name.lower().endswith(".shp"):
            base = name[:-4].lower()
            if f"{base}.shx" in present and f"{base}.dbf" in present:
                found.append(parts)
    return sorted(found)


def _place_folder(staging: Path, folder: Path, stem: str) -> Path:
    while True:
        final = _free_name(folder, stem, "")
        try:
            final.mkdir()  # claims the name: a folder made meanwhile by someone else makes this fail
        except FileExistsError:
            continue
        os.replace(staging, final)  # replaces the empty folder just made
        return final
