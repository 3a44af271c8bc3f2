"""Running a preflight for a user: the rate limit it counts against, and the call itself.

Test Connection, verified saves and deploys of unverified credentials all go through here, so they
share one limit (5 a minute per user) and one set of registry options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from pydantic import SecretStr

from guara import metrics
from guara.core.accounts import Principal
from guara.core.errors import RateLimited
from guara.registry import CloudKey, PreflightResult, preflight

if TYPE_CHECKING:
    from guara.context import AppContext


@dataclass(frozen=True)
class RegistryLogin:
    """A registry and the credentials guara sends it. The password only ever lives in memory.

    With a ``cloud_key`` (AWS ECR, Google), the username and password are empty: the key is exchanged
    for a short-lived login at each use (``with_exchanged`` gives the login a runtime pulls with)."""

    registry: str
    username: str
    password: SecretStr
    cloud_key: CloudKey | None = field(default=None, repr=False)

    @classmethod
    def of_key(cls, registry: str, key: CloudKey) -> RegistryLogin:
        return cls(registry, "", SecretStr(""), key)


class RegistryAuth(TypedDict):
    """How one registry operation signs in, as the registry library's keyword arguments."""

    registry: str | None
    username: str | None
    password: SecretStr | None
    cloud_key: CloudKey | None


def registry_auth(login: RegistryLogin | None, *, registry: str | None = None) -> RegistryAuth:
    """``login`` for a preflight, a resolution or a read of the image: a cloud key is exchanged by the
    library, a username and password are sent as they are; anonymous (at ``registry``) without one."""
    if login is None:
        return {"registry": registry, "username": None, "password": None, "cloud_key": None}
    basic = login.cloud_key is None
    return {
        "registry": login.registry,
        "username": login.username if basic else None,
        "password": login.password if basic else None,
        "cloud_key": login.cloud_key,
    }


async def count_preflight(ctx: AppContext, principal: Principal) -> None:
    """Count one preflight against the caller's limit; RateLimited (with Retry-After) past it."""
    limiter = ctx.limiters.preflight
    retry_after = await limiter.hit_async(str(principal.user_id))
    if retry_after is not None:
        raise RateLimited(
            f"You have run {limiter.item.amount} connection tests in the last minute. "
            f"Try again in {retry_after} seconds.",
            retry_after=retry_after,
        )


async def run_preflight(
    ctx: AppContext, *, image: str, login: RegistryLogin | None, registry: str | None = None
) -> PreflightResult:
    """The preflight for ``image`` with ``login`` (anonymous when None) on the application's options.

    ``registry`` is the Registry URL typed for an anonymous test; a login carries its own."""
    result = await preflight(image, options=ctx.registry, **registry_auth(login, registry=registry))
    metrics.count_preflight(None if result.code is None else result.code.value, result.elapsed_ms / 1000)
    return result
