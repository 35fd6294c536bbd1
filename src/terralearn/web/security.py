"""Request guards of the web app: host, access token, cross-site requests, response headers.

- Host: on a loopback address only loopback host names are served (stops DNS-rebinding pages).
- Access token: required when the app listens on another address; given once in the printed
  address (``?token=``), then kept in an HttpOnly, SameSite=Strict cookie.
- Cross-site requests: every state-changing request must carry the page's anti-forgery token in
  the ``X-TerraLearn-CSRF`` header, and its Origin (when sent) must be this app's own.
- Headers: a strict Content-Security-Policy (no third-party anything), no sniffing, no framing.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-TerraLearn-CSRF"
TOKEN_COOKIE = "terralearn_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: Files of the workspace (reports, pictures) are shown sandboxed: no script of theirs runs with the app's rights.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this computer only."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Guard:
    """Settings of the guards of one app."""

    host: str = "127.0.0.1"
    token: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)

    def host_allowed(self, request: Request) -> bool:
        if not self.loopback_only:
            return True  # reachable under any name: the access token protects it
        name = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        return name in LOOPBACK or name == "testserver"

    def origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # same-origin fetches from older browsers, scripts and tests
            return True
        host = request.headers.get("host", "")
        return urlsplit(origin).netloc == host and urlsplit(origin).scheme in ("http", "https")

    def token_ok(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return secrets.compare_digest(given.encode(), self.token.encode())


def _deny(request: Request, status: int, message: str, fix: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message, "fix": fix}, status_code=status)
    return PlainTextResponse(f"{message}\n{fix}", status_code=status)


def secure_headers(response: Response, path: str) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY" if not path.startswith("/files/") else "SAMEORIGIN"
    response.headers["Content-Security-Policy"] = FILE_CSP if path.startswith("/files/") else CSP
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def install(app, guard: Guard) -> None:
    """Add the guards to a FastAPI/Starlette app."""

    @app.middleware("http")
    async def guards(request: Request, call_next):
        path = request.url.path
        if not guard.host_allowed(request):
            return secure_headers(_deny(request, 400, f"Unknown host '{request.headers.get('host')}'.",
                                        "Open the app at the address `terralearn ui` printed."), path)  # fmt: skip
        given = request.query_params.get("token")
        if guard.token is not None and given is not None and request.method in SAFE_METHODS:
            if not secrets.compare_digest(given.encode(), guard.token.encode()):
                return secure_headers(_deny(request, 401, "The access token is wrong.",
                                            "Open the exact address `terralearn ui` printed."), path)  # fmt: skip
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            response = RedirectResponse(path + ("?" + urlencode(rest) if rest else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, guard.token, httponly=True, samesite="strict")
            return secure_headers(response, path)
        if not guard.token_ok(request):
            return secure_headers(_deny(request, 401, "This TerraLearn app needs its access token.",
                                        "Open the address `terralearn ui` printed; it carries the token."), path)  # fmt: skip
        if request.method not in SAFE_METHODS:
            if not guard.origin_allowed(request):
                return secure_headers(_deny(request, 403, f"Cross-site request from '{request.headers.get('origin')}' "
                                            "refused.", "Use the app's own pages."), path)  # fmt: skip
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), guard.csrf.encode()):
                return secure_headers(_deny(request, 403, "Missing or wrong anti-forgery token.",
                                            "Reload the page and try again."), path)  # fmt: skip
        response = await call_next(request)
        return secure_headers(response, path)
