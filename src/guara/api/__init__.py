"""The JSON API under ``/api/v1``: one router per resource, assembled here, over ``guara.core``."""

from __future__ import annotations

from fastapi import APIRouter

from guara.api.routes import (
    accounts,
    audit,
    credentials,
    deployments,
    members,
    projects,
    services,
    tokens,
    webhooks,
)


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    for module in (accounts, projects, members, services, credentials, deployments, audit, tokens, webhooks):
        api.include_router(module.router)
    return api
