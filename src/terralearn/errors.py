"""Every exception TerraLearn raises on purpose.

Each error carries a plain-words ``message`` that quotes the bad value and a ``fix``
that tells the user what to do. Classes also inherit the matching builtin so that
callers who know nothing of TerraLearn can still catch them (``except OSError``).
The CLI prints ``message`` and ``fix`` and exits non-zero without a traceback.
"""

from __future__ import annotations


class TerraLearnError(Exception):
    """Base class: a problem with the user's inputs or settings, explained."""

    exit_code = 2
    #: The HTTP status the web app answers with (the class says it, never the message's words).
    http_status = 400

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\nFix: {self.fix}" if self.fix else self.message


class InputFileError(TerraLearnError, OSError):
    """An input file is missing, unreadable or not the kind of file expected."""


class RasterError(TerraLearnError, ValueError):
    """A raster cannot be used as given (grid, CRS, bands, size)."""


class LabelError(TerraLearnError, ValueError):
    """Labels cannot be used as given (fields, class values, geometries)."""


class ConfigError(TerraLearnError, ValueError):
    """A stage setting is out of range or inconsistent with the inputs."""


class OutputExistsError(TerraLearnError, FileExistsError):
    """The output exists and the user did not ask to overwrite it."""


class ChecksFailedError(TerraLearnError):
    """Pre-flight checks found at least one error; nothing was written."""

    def __init__(self, message: str, fix: str = "", findings: list | None = None) -> None:
        super().__init__(message, fix)
        self.findings = findings or []


class ChipSetError(TerraLearnError, ValueError):
    """A chip set folder is incomplete, tampered with or of an unknown version."""


def format_validation_error(stage: str, exc: Exception) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one ConfigError quoting each bad value."""
    lines = []
    fixes = []
    for err in getattr(exc, "errors", lambda: [])():
        field = ".".join(str(p) for p in err.get("loc", ())) or "(settings)"
        value = err.get("input")
        lines.append(f"{field} = {value!r}: {err.get('msg', 'invalid')}")
        ctx = err.get("ctx") or {}
        if "gt" in ctx:
            fixes.append(f"set {field} to a value greater than {ctx['gt']}")
        elif "ge" in ctx:
            fixes.append(f"set {field} to {ctx['ge']} or more")
        elif "lt" in ctx:
            fixes.append(f"set {field} to a value below {ctx['lt']}")
        elif "le" in ctx:
            fixes.append(f"set {field} to {ctx['le']} or less")
        elif err.get("type") == "extra_forbidden":
            fixes.append(f"remove the unknown setting {field}")
        elif "expected" in ctx:
            fixes.append(f"choose {field} from {ctx['expected']}")
    message = f"Invalid {stage} settings: " + "; ".join(lines or [str(exc)])
    fix = "; ".join(dict.fromkeys(fixes)) or "see `terralearn " + stage + " --help` for valid values"
    return ConfigError(message, fix[0].upper() + fix[1:] + ".")


class PackageError(TerraLearnError, ValueError):
    """A model package is incomplete, tampered with, or of an unknown version."""


class RunError(TerraLearnError, LookupError):
    """A run number that the registry does not know, or a run that cannot be resumed."""

    http_status = 409


class RunNotFoundError(RunError):
    """A run number that the registry does not know."""

    http_status = 404


class WorkspacePathError(TerraLearnError, PermissionError):
    """A path given to the web app points outside the workspace or at something that is not there."""

    http_status = 403


class WorkspacePathMissingError(WorkspacePathError):
    """A workspace path that is allowed but names nothing."""

    http_status = 404


class UploadError(TerraLearnError, ValueError):
    """An uploaded file is too large, of a type TerraLearn does not read, or not what its name says."""


class UploadTooLargeError(UploadError):
    """An upload over the size limit."""

    http_status = 413


class JobError(TerraLearnError, RuntimeError):
    """A background job cannot be started, cancelled or resumed as asked."""

    http_status = 409


class JobNotFoundError(JobError):
    """A job number, or a job kind, that does not exist."""

    http_status = 404
