"""The JSON API under ``/api/v1``: one router per resource, assembled here, over ``guara.core``."""

from __future__ import annotations

from fastapi import APIRouter

from guara.api.routes import audit, credentials, deployments, projects, services, webhooks


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    for module in (projects, services, credentials, deployments, audit, webhooks):
        api.include_router(module.router)
    return api
