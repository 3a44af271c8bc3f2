"""A project's webhook for health notifications; its secret is write-only."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from guara.api.deps import CurrentUser
from guara.api.schemas import WebhookPublic, WebhookSet, error_responses
from guara.core import webhooks
from guara.core.errors import NotFound
from guara.http.deps import ContextDep

router = APIRouter(tags=["webhooks"], responses=error_responses(401, 404, 422))


@router.put("/projects/{project_id}/webhook", responses=error_responses(400, 413))
async def set_webhook(
    project_id: uuid.UUID, body: WebhookSet, user: CurrentUser, ctx: ContextDep
) -> WebhookPublic:
    """Set the URL that receives failing, recovered, expiring and tag-moved notifications, and the
    secret they are signed with (``X-Guara-Signature``)."""
    view = await webhooks.set_webhook(ctx, user, project_id=project_id, url=body.url, secret=body.secret)
    return WebhookPublic.model_validate(view)


@router.get("/projects/{project_id}/webhook")
async def get_webhook(project_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> WebhookPublic:
    """The URL and the delivery log (newest first); never the secret."""
    return WebhookPublic.model_validate(await webhooks.get_webhook(ctx, user, project_id=project_id))


@router.delete("/projects/{project_id}/webhook", status_code=status.HTTP_204_NO_CONTENT)
async def remove_webhook(project_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> Response:
    """Remove the webhook and its delivery log."""
    if not await webhooks.remove_webhook(ctx, user, project_id=project_id):
        raise NotFound("this project has no webhook")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
