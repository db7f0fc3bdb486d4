"""/api/v2/user/env-vars/import: a .env file's text previewed (names and statuses, never a value) or
applied all-or-nothing (service/core/env_import.py). The body is read with a cap (413 over it)."""
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from service.auth import Caller
from service.core import env_import
from service.request_body import read_capped
from service.schemas import EnvImportRequest, ImportPreview, ImportResult

from .deps import CallerDep, ComponentsDep, SessionDep

router = APIRouter(prefix="/api/v2/user/env-vars/import", tags=["env-vars"])
_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": EnvImportRequest.model_json_schema()}}}}
_RESPONSES: dict = {
    413: {"description": f"The body is over {env_import.MAX_BODY_BYTES} bytes"},
    422: {"description": f"A malformed body, more than {env_import.MAX_ENTRIES} entries, or (apply) entries "
                         "and decisions that stop the import, each located: `[body, text, <line>]` or "
                         "`[body, decisions, <name>]`"},
}


def import_caller(who: CallerDep, c: ComponentsDep) -> Caller:
    env_import.admit_import(c, who)
    return who


async def import_body(request: Request) -> EnvImportRequest:
    raw = await read_capped(request, env_import.MAX_BODY_BYTES)
    try:
        return EnvImportRequest.model_validate_json(raw)
    except ValidationError as e:  # reported like a body FastAPI validated: never with the input
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


ImportCaller = Annotated[Caller, Depends(import_caller)]  # first: nothing is read for a refused caller
ImportBody = Annotated[EnvImportRequest, Depends(import_body)]


@router.post("/preview", response_model=ImportPreview, openapi_extra=_BODY, responses=_RESPONSES)
def preview_import(who: ImportCaller, body: ImportBody, s: SessionDep, c: ComponentsDep) -> ImportPreview:
    """Each entry of the file with its line, name and status (new, existing, invalid, reserved,
    duplicate) and why it would be refused; never a value. Writes nothing."""
    return env_import.preview(s, c, who, body.text, body.decisions)


@router.post("", response_model=ImportResult, openapi_extra=_BODY, responses=_RESPONSES)
def apply_import(who: ImportCaller, body: ImportBody, s: SessionDep, c: ComponentsDep):
    """Applies the file all-or-nothing: every value written to Vault as you, or none (a failure part-way
    undoes what was written). Refused whole (422) if any entry is invalid, reserved or duplicated, or an
    existing name has no decision (`skip` or `overwrite`)."""
    try:
        return env_import.apply(s, c, who, body.text, body.decisions)
    except env_import.ImportRefused as e:
        return JSONResponse({"detail": [{"loc": ["body", *where], "msg": msg, "type": "value_error"}
                                        for where, msg in e.problems]}, status_code=422)
