"""Deployments of a service: start one (202, it runs in the background), list them, read one.

The router's lifespan stops the platform's deployment runner when the application shuts down, so no
background deploy outlives the app (FastAPI merges an included router's lifespan into the app's).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, status

from guara.api.deps import CurrentUser, PlatformDep, SessionDep
from guara.api.schemas import DeploymentPublic
from guara.core import deployments
from guara.store.models import Deployment


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    platform = getattr(app.state, "platform", None)
    if platform is not None:
        await deployments.shutdown(platform)


router = APIRouter(tags=["deployments"], lifespan=_lifespan)


def deployment_public(row: Deployment) -> DeploymentPublic:
    return DeploymentPublic(
        id=row.id,
        service_id=row.service_id,
        status=row.status,
        image=row.image,
        platform=row.platform,
        digest=row.digest,
        code=row.code,
        message=row.message,
        with_credentials=row.with_credentials,
        manifests=row.manifests,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("/services/{service_id}/deployments", status_code=status.HTTP_202_ACCEPTED)
async def start_deployment(
    service_id: uuid.UUID,
    user: CurrentUser,
    platform: PlatformDep,
) -> DeploymentPublic:
    row = await deployments.start_deployment(platform, user, service_id=service_id)
    return deployment_public(row)


@router.get("/services/{service_id}/deployments")
def list_deployments(
    service_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=deployments.MAX_LIST_LIMIT)] = deployments.DEFAULT_LIST_LIMIT,
) -> list[DeploymentPublic]:
    rows = deployments.list_deployments(session, principal=user, service_id=service_id, limit=limit)
    return [deployment_public(row) for row in rows]


@router.get("/services/{service_id}/deployments/{deployment_id}")
def get_deployment(
    service_id: uuid.UUID, deployment_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> DeploymentPublic:
    row = deployments.get_deployment(
        session, principal=user, service_id=service_id, deployment_id=deployment_id
    )
    return deployment_public(row)
