"""/dashboard/activity: the caller's audit trail, as the API's activity route (service/core/activity.py)."""
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import SessionDep
from service.core.activity import list_activity

from .deps import ViewerDep
from .pages import PAGE_SIZE, render

router = APIRouter(prefix="/dashboard", include_in_schema=False)
ACTIONS = {"env_var.create": "Created", "env_var.update": "Changed", "env_var.delete": "Deleted",
           "env_var.import": "Imported a .env file", "execution.start": "Started a job",
           "execution.run": "Job received its env vars", "execution.cancel": "Cancelled a job",
           "execution.credential_issued": "Credential issued for", "execution.credential_revoked": "Credential revoked for",
           "sign_in.dashboard": "Dashboard sign-in", "sign_in.vault": "Vault sign-in"}


@router.get("/activity")
def activity_page(request: Request, v: ViewerDep, s: SessionDep, page: int = 1) -> Response:
    page = max(1, min(page, 100_000))
    result = list_activity(s, v.who, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(request, "activity.html", v=v, items=result.items, total=result.total, page=page,
                  pages=max(1, -(-result.total // PAGE_SIZE)), actions=ACTIONS)
