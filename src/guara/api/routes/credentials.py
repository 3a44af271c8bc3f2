"""Registry credentials of a service, and Test Connection."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from guara.api.deps import CurrentUser, PlatformDep
from guara.api.schemas import (
    CredentialsPublic,
    CredentialsRemoved,
    CredentialsUpdate,
    PreflightPublic,
    RegistryTest,
)
from guara.core import credentials, deployments

router = APIRouter(tags=["registry credentials"])


@router.put("/services/{service_id}/registry-credentials")
async def put_credentials(
    service_id: uuid.UUID, body: CredentialsUpdate, user: CurrentUser, platform: PlatformDep
) -> CredentialsPublic:
    view = await credentials.save_credentials(
        platform,
        user,
        service_id=service_id,
        credentials=credentials.CredentialsInput(body.registry, body.username, body.password),
        skip_verification=body.skip_verification,
    )
    return CredentialsPublic.model_validate(view, from_attributes=True)


@router.delete("/services/{service_id}/registry-credentials")
async def delete_credentials(
    service_id: uuid.UUID, user: CurrentUser, platform: PlatformDep
) -> CredentialsRemoved:
    withdrawal = await deployments.withdraw_credentials(platform, user, service_id=service_id)
    return CredentialsRemoved(removed=withdrawal.removed, message=withdrawal.message)


@router.post("/registry/test")
async def test_connection(body: RegistryTest, user: CurrentUser, platform: PlatformDep) -> PreflightPublic:
    result = await credentials.run_test_connection(
        platform,
        user,
        image=body.image,
        registry=body.registry,
        username=body.username,
        password=body.password,
        service_id=body.service_id,
    )
    return PreflightPublic(
        ok=result.ok,
        code=result.code.value if result.code else None,
        message=result.message,
        digest=result.digest,
        elapsed_ms=result.elapsed_ms,
    )
