"""/dashboard/import: a .env file pasted or uploaded, previewed, then imported whole or not at all
(service/core/env_import.py). The pasted text (or uploaded file) is never rendered back: values appear in
no page. With scripts, Preview and Import are sent by dashboard.js and only the preview section of the
answer is swapped in, so the text stays in the form the user filled; without them, the preview page asks
for it again."""
import urllib.parse
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from service.api.deps import ComponentsDep
from service.auth import Caller
from service.components import Components
from service.core import env_import
from service.core.errors import InvalidField
from service.request_body import read_capped

from .deps import Viewer, ViewerDep, check_csrf
from .pages import HOME, refused_field, render

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@dataclass
class ImportForm:
    text: str
    decisions: dict
    errors: dict[str, str]


async def _import_form(request: Request, v: Viewer, c: Components) -> ImportForm:
    env_import.admit_import(c, v.who)
    await read_capped(request, env_import.MAX_BODY_BYTES)  # the form parser then reads it from memory
    async with request.form(max_files=1, max_fields=env_import.MAX_ENTRIES + 8,
                            max_part_size=env_import.MAX_BODY_BYTES) as form:
        check_csrf(v.csrf, str(form.get("csrf_token") or ""))
        errors: dict[str, str] = {}
        pasted = form.get("text")
        text = pasted.replace("\r\n", "\n") if isinstance(pasted, str) else ""  # a textarea is sent with CR LF
        upload = form.get("file")
        raw = await upload.read() if isinstance(upload, UploadFile) else b""
        if raw and text.strip():
            errors["form"] = "paste the file or upload it, not both"
        elif raw:
            try:
                text = raw.decode("utf-8")  # bytes as they are: a file keeps its line breaks
            except UnicodeDecodeError:
                errors["file"] = "must be UTF-8 text"
        elif not text.strip():
            errors["text"] = "paste a .env file or choose one to upload"
        decisions = {}
        for key, choice in form.multi_items():
            if key.startswith("decision.") and choice in ("skip", "overwrite"):
                decisions[key.removeprefix("decision.")] = choice
    return ImportForm(text, decisions, errors)


def _import_page(request: Request, v: Viewer, status_code: int = 200, **values) -> Response:
    values = {"preview": None, "errors": {}, "again": False, **values}
    return render(request, "env_import.html", status_code, v=v, max_entries=env_import.MAX_ENTRIES,
                  max_kib=env_import.MAX_BODY_BYTES // 1024, **values)


def _preview(c: Components, who: Caller, form: ImportForm):
    with c.sessions() as s:
        return env_import.preview(s, c, who, form.text, form.decisions)


def _apply(c: Components, who: Caller, form: ImportForm):
    with c.sessions() as s:
        return env_import.apply(s, c, who, form.text, form.decisions)


@router.get("/import")
def import_page(request: Request, v: ViewerDep) -> Response:
    return _import_page(request, v)


@router.post("/import/preview")
async def import_preview(request: Request, v: ViewerDep, c: ComponentsDep) -> Response:
    form = await _import_form(request, v, c)
    if form.errors:
        return _import_page(request, v, 422, errors=form.errors)
    try:
        preview = await run_in_threadpool(_preview, c, v.who, form)
    except InvalidField as e:
        return _import_page(request, v, 422, errors=refused_field(e))
    return _import_page(request, v, preview=preview, again=True)


@router.post("/import")
async def import_apply(request: Request, v: ViewerDep, c: ComponentsDep) -> Response:
    form = await _import_form(request, v, c)
    if form.errors:
        return _import_page(request, v, 422, errors=form.errors)
    try:
        result = await run_in_threadpool(_apply, c, v.who, form)
    except env_import.ImportRefused:
        # The same check as the preview's: each refused entry and undecided name, in its row.
        preview = await run_in_threadpool(_preview, c, v.who, form)
        return _import_page(request, v, 422, preview=preview, again=True,
                            errors={"form": "Nothing was imported: see the entries below."})
    except InvalidField as e:
        return _import_page(request, v, 422, errors=refused_field(e))
    done = f"{result.created}-{result.overwritten}-{result.skipped}"
    return RedirectResponse(f"{HOME}?{urllib.parse.urlencode({'imported': done})}", 303)
