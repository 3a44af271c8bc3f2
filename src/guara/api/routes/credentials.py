"""Registry credentials of a service, and Test Connection."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from guara.api.deps import CurrentUser
from guara.api.schemas import (
    CredentialHealthPublic,
    PreflightPublic,
    RegistryCredentialsPublic,
    RegistryCredentialsRemoved,
    RegistryCredentialsUpdate,
    RegistryTest,
    error_responses,
)
from guara.core import connection_tests, credentials, health_checks
from guara.http.deps import ContextDep

router = APIRouter(tags=["registry credentials"], responses=error_responses(401, 403, 404, 422))


@router.put("/services/{service_id}/registry-credentials", responses=error_responses(400, 409, 413, 429))
async def save_registry_credentials(
    service_id: uuid.UUID, body: RegistryCredentialsUpdate, user: CurrentUser, ctx: ContextDep
) -> RegistryCredentialsPublic:
    view = await credentials.save_credentials(
        ctx, user, service_id=service_id, change=body.change(), skip_verification=body.skip_verification
    )
    return RegistryCredentialsPublic.model_validate(view)


@router.delete("/services/{service_id}/registry-credentials", responses=error_responses(409))
async def remove_registry_credentials(
    service_id: uuid.UUID, user: CurrentUser, ctx: ContextDep
) -> RegistryCredentialsRemoved:
    withdrawal = await credentials.remove_credentials(ctx, user, service_id=service_id)
    return RegistryCredentialsRemoved.model_validate(withdrawal)


@router.post("/services/{service_id}/registry-credentials/check", responses=error_responses(409, 429))
async def check_registry_credentials(
    service_id: uuid.UUID, user: CurrentUser, ctx: ContextDep
) -> CredentialHealthPublic:
    """Check now: re-run the preflight with the stored credentials and record the result (counts
    against the Test Connection limit)."""
    health = await health_checks.check_now(ctx, user, service_id=service_id)
    return CredentialHealthPublic.model_validate(health)


@router.post("/registry/test", responses=error_responses(400, 409, 413, 429))
async def test_connection(body: RegistryTest, user: CurrentUser, ctx: ContextDep) -> PreflightPublic:
    request = connection_tests.ConnectionTest(
        image=body.image,
        registry=body.registry,
        username=body.username,
        password=body.password,
        service_id=body.service_id,
        kind=body.kind,
        aws_access_key_id=body.aws_access_key_id,
        aws_secret_access_key=body.aws_secret_access_key,
        aws_region=body.aws_region,
        aws_role_arn=body.aws_role_arn,
        google_json_key=body.google_json_key,
    )
    result = await connection_tests.run_connection_test(ctx, user, request)
    return PreflightPublic.model_validate(result.as_dict())
