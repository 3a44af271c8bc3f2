"""A project's notifications page: the webhook URL, its signing secret (write-only) and the delivery
log, where a guard refusal or a failing receiver shows up."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from guara.core import projects, webhooks
from guara.core.errors import InvalidInput, NotFound
from guara.http.deps import ContextDep
from guara.http.errors import status_for
from guara.web.auth import FormUser, WebUser
from guara.web.forms import NO_SECRET, FormSecret, FormText, PageErrors
from guara.web.presenters import ago
from guara.web.views import render, see_other

router = APIRouter(include_in_schema=False)

NOTES = {
    "saved": "Webhook saved: failing, recovered, expiring and tag-moved notices are sent to it.",
    "removed": "Webhook removed: no notifications are sent.",
}


async def _page(
    request: Request,
    ctx: ContextDep,
    user: WebUser,
    project_id: uuid.UUID,
    *,
    status_code: int = 200,
    errors: PageErrors | None = None,
    url: str | None = None,
    note: str = "",
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    try:
        current: webhooks.WebhookView | None = await webhooks.get_webhook(ctx, user, project_id=project_id)
    except NotFound:
        current = None
    deliveries = [
        {"delivery": d, "when": ago(d.created_at), "when_iso": d.created_at.isoformat()}
        for d in (current.deliveries if current else [])
    ]
    return render(
        request,
        "webhook.html",
        status_code=status_code,
        project=project,
        webhook=current,
        deliveries=deliveries,
        errors=errors or PageErrors(),
        url_value=url if url is not None else (current.url if current else ""),
        note=note,
    )


@router.get("/projects/{project_id}/webhook")
async def webhook_page(
    request: Request, ctx: ContextDep, user: WebUser, project_id: uuid.UUID, saved: str = ""
) -> Response:
    return await _page(request, ctx, user, project_id, note=NOTES.get(saved, ""))


@router.post("/projects/{project_id}/webhook")
async def webhook_form(
    request: Request,
    ctx: ContextDep,
    user: FormUser,
    project_id: uuid.UUID,
    url: FormText = "",
    secret: FormSecret = NO_SECRET,
) -> Response:
    try:
        await webhooks.set_webhook(ctx, user, project_id=project_id, url=url, secret=secret)
    except InvalidInput as exc:
        errors = PageErrors(fields={exc.field or "url": exc.message})
        return await _page(
            request, ctx, user, project_id, status_code=status_for(exc), errors=errors, url=url
        )
    return see_other(f"/projects/{project_id}/webhook?saved=saved")


@router.post("/projects/{project_id}/webhook/remove")
async def remove_webhook_form(ctx: ContextDep, user: FormUser, project_id: uuid.UUID) -> Response:
    await webhooks.remove_webhook(ctx, user, project_id=project_id)
    return see_other(f"/projects/{project_id}/webhook?saved=removed")
