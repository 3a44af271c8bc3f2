"""Deployments of a service: start one (202, it runs in the background), list them, read one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from guara.api.deps import CurrentUser
from guara.api.schemas import DeploymentPublic, ServiceLogsPublic, ServiceStopped, error_responses
from guara.core import deployments
from guara.http.deps import ContextDep

router = APIRouter(tags=["deployments"], responses=error_responses(401, 403, 404, 422))


@router.post(
    "/services/{service_id}/deployments",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(409, 429),
)
async def start_deployment(service_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> DeploymentPublic:
    view = await deployments.start_deployment(ctx, user, service_id=service_id)
    return DeploymentPublic.model_validate(view)


@router.get("/services/{service_id}/deployments")
async def list_deployments(
    service_id: uuid.UUID,
    user: CurrentUser,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=deployments.MAX_LIST_LIMIT)] = deployments.DEFAULT_LIST_LIMIT,
) -> list[DeploymentPublic]:
    views = await deployments.list_deployments(ctx, user, service_id=service_id, limit=limit)
    return [DeploymentPublic.model_validate(view) for view in views]


@router.get("/services/{service_id}/deployments/{deployment_id}")
async def get_deployment(
    service_id: uuid.UUID, deployment_id: uuid.UUID, user: CurrentUser, ctx: ContextDep
) -> DeploymentPublic:
    view = await deployments.get_deployment(ctx, user, service_id=service_id, deployment_id=deployment_id)
    return DeploymentPublic.model_validate(view)


@router.post("/services/{service_id}/stop", responses=error_responses(409))
async def stop_service(service_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> ServiceStopped:
    """Stop the service's running container (container engine runtime); deploy again to start it."""
    return ServiceStopped(stopped=await deployments.stop_service(ctx, user, service_id=service_id))


@router.get("/services/{service_id}/logs", responses=error_responses(409))
async def service_logs(
    service_id: uuid.UUID,
    user: CurrentUser,
    ctx: ContextDep,
    tail: Annotated[int, Query(ge=1, le=deployments.MAX_LOG_TAIL)] = deployments.DEFAULT_LOG_TAIL,
) -> ServiceLogsPublic:
    """The running container's last log lines (stdout and stderr), bounded and redacted."""
    view = await deployments.service_logs(ctx, user, service_id=service_id, tail=tail)
    return ServiceLogsPublic.model_validate(view)
