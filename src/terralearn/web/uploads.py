"""Uploads into the workspace, for the web app.

An upload is streamed to a hidden temporary file with a size limit, checked by content (not only
by extension), and renamed into place without ever overwriting an existing file. A zipped
shapefile is extracted into a folder of its own; nothing in the zip may land outside it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

import pyogrio

from terralearn.errors import UploadError, UploadTooLargeError
from terralearn.io.raster import open_raster
from terralearn.web.kinds import GEOJSON_TYPE, GEOJSON_TYPES

#: Shapefile side-car extensions extracted from an uploaded zip; anything else in the zip is skipped.
SHAPEFILE_PARTS = frozenset({".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".xml"})
#: A Windows drive at the start of a path ('C:'): neither a workspace path nor a zip member may have one.
DRIVE = re.compile(r"^[A-Za-z]:")

_CHUNK = 1 << 20
_MAX_ZIP_MEMBERS = 10_000
_JSON_FULL_PARSE = 64 << 20


def upload_name(filename: str) -> str:
    """The safe name an upload is saved under, or UploadError when its extension is not taken."""
    name = sanitize_filename(filename)
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadError(
            f"'{filename}' has the extension {suffix or '(none)'!r}, which TerraLearn does not take as an upload.",
            f"Upload one of: {', '.join(UPLOAD_SUFFIXES)} (GeoTIFF, GeoPackage, GeoJSON, zipped shapefile).",
        )
    return Path(name).stem + suffix


def receive(stream, filename: str, name: str, folder: Path, *, subdir: str, max_bytes: int) -> Path:
    """Stream an upload into ``folder`` (the workspace's ``subdir``) as ``name``, check it, place it; its path."""
    suffix = Path(name).suffix
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


#: What each extension taken as an upload must hold (as ``sniff`` words it), and its name in messages.
_EXPECTED = {
    ".tif": ({"a TIFF image", "a BigTIFF image"}, "a GeoTIFF"),
    ".tiff": ({"a TIFF image", "a BigTIFF image"}, "a GeoTIFF"),
    ".gpkg": ({"a GeoPackage"}, "a GeoPackage"),
    ".geojson": ({"JSON text"}, "GeoJSON"),
    ".json": ({"JSON text"}, "GeoJSON"),
    ".zip": ({"a zip archive"}, "a zipped shapefile"),
}
#: Extensions accepted as uploads: those whose content is checked.
UPLOAD_SUFFIXES = tuple(_EXPECTED)
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
            match = GEOJSON_TYPE.search(fh.read(1 << 16))
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
        or DRIVE.match(name) is not None
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
