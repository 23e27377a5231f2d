"""`/llms.txt` and `/llms-full.txt`: the gateway described for language models.

Written by `ops/llms.py` from the CLI's parser and `/openapi.json` (a test keeps them in
step); read once when the app is built, served with this gateway's own URL filled in.
"""

from __future__ import annotations

from importlib.resources import files

from quart import Blueprint, Response

from ..services import Services

TEXT = "text/plain; charset=utf-8"


def llms_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("llms", __name__)
    data = files("proxy.data")
    short = data.joinpath("llms.txt").read_text(encoding="utf-8")
    full = data.joinpath("llms-full.txt").read_text(encoding="utf-8")

    def filled(template: str) -> Response:
        text = template.replace("{base_url}", services.identity.base_url)
        return Response(text, content_type=TEXT, headers={"cache-control": "public, max-age=300"})

    @bp.get("/llms.txt")
    async def llms() -> Response:
        return filled(short)

    @bp.get("/llms-full.txt")
    async def llms_full() -> Response:
        return filled(full)

    return bp
