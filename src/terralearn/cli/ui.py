"""`terralearn ui`: the no-code web app on a workspace folder."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from terralearn.cli._common import Debug, Workspace, console, handle_errors
from terralearn.errors import ConfigError
from terralearn.runs import resolve_workspace


@handle_errors
def ui(
    workspace: Workspace = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (default: this computer only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8765,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a non-loopback --host; the app then requires an access token."),
    ] = False,
    token: Annotated[
        str | None, typer.Option("--token", envvar="TERRALEARN_TOKEN", help="Access token (default: a random one).")
    ] = None,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", min=1, help="Largest accepted upload.")] = 2048,
    debug: Debug = False,
) -> None:
    """Start the web app on the workspace folder and print its address."""
    import uvicorn

    from terralearn.web.app import create_app
    from terralearn.web.security import is_loopback

    root = resolve_workspace(workspace)
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise ConfigError(
            f"--host {host} would let other computers reach the app.",
            "Add --allow-remote to do it on purpose (an access token is then required), or leave --host out.",
        )
    if remote:
        token = token or secrets.token_urlsafe(24)
    app = create_app(root, host=host, token=token if remote else None, max_upload_mb=max_upload_mb)
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if remote else "")
    console.print(f"TerraLearn is running on the workspace {root}\nOpen [bold]{address}[/] in a browser "
                  "(Ctrl-C stops the app; running jobs go on).", highlight=False)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning")
