"""Serve the web studio (static/: index.html, app.js, style.css) from the service app itself.

The page needs nothing from another site and no build step; everything it
does goes through the public /v1 API with the user's key, so this module only
mounts files. The service's app factory calls `mount_studio(app)`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STUDIO_PATH = "/studio"


def static_dir() -> Path:
    return Path(str(resources.files("kinema.service").joinpath("static")))


def mount_studio(app: FastAPI, path: str = STUDIO_PATH) -> None:
    """Mount the studio at `path` (served as `path/`), and send `/` there when nothing else owns it."""
    app.mount(path, StaticFiles(directory=static_dir(), html=True), name="studio")

    if not any(getattr(route, "path", None) == "/" for route in app.routes):

        @app.get("/", include_in_schema=False)
        def _root() -> RedirectResponse:
            return RedirectResponse(url=f"{path}/")
