"""The findings of the pre-flight checks, and the report that gathers them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from terralearn.io.inputs import Inputs
from terralearn.labels import Census

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Finding:
    check: str
    severity: Severity
    message: str
    fix: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckReport:
    findings: list[Finding]
    inputs: Inputs | None = None
    labels: object | None = None
    census: Census | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "counts": {s: sum(f.severity == s for f in self.findings) for s in SEVERITY_ORDER},
            "findings": [f.as_dict() for f in self.findings],
        }
