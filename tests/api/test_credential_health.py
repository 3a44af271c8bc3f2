"""Credential health: checks of stored credentials against a real registry whose password changes,
the pinned ``registry_credentials.health``, Check now, the expiry date and the audited transitions."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from guara.context import AppContext
from guara.core import health_checks
from guara.store.models import utcnow
from tests.lab import Lab
from tests.lab.lab import OwnRegistry, own_registry
from tests.support import ApiUser, deploy_and_wait, run, settled_deployment

pytestmark = pytest.mark.lab

PASSWORD = "first-deploy-secret"  # noqa: S105
HEALTH_KEYS = {
    "status",
    "last_checked_at",
    "last_passed_at",
    "failing_since",
    "code",
    "message",
    "expires_on",
}


@pytest.fixture
def registry(lab: Lab, tmp_path: Path) -> Iterator[OwnRegistry]:
    with own_registry(lab, tmp_path / "own", {"deployer": PASSWORD}) as own:
        own.registry.push_image("acme/api:v1")
        yield own


def _service_with_credentials(client: ApiUser, registry: OwnRegistry, **extra: Any) -> tuple[str, str]:
    project_id = client.project()
    service_id = client.service(project_id, image=registry.registry.ref("acme/api:v1"))
    saved = client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": registry.registry.host, "username": "deployer", "password": PASSWORD, **extra},
    )
    assert saved.status_code == 200, saved.text
    return project_id, service_id


def _health(client: ApiUser, service_id: str) -> dict[str, Any]:
    response = client.get(f"/services/{service_id}")
    assert response.status_code == 200, response.text
    health: dict[str, Any] = response.json()["registry_credentials"]["health"]
    return health


def _actions(client: ApiUser, project_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/projects/{project_id}/audit-logs").json()["entries"])


def test_check_fails_when_the_password_changes_and_recovers_when_restored(
    lab_client: ApiUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    project_id, service_id = _service_with_credentials(lab_client, registry)
    saved = _health(lab_client, service_id)
    assert set(saved) == HEALTH_KEYS
    assert saved["status"] == "passing" and saved["failing_since"] is None and saved["expires_on"] is None

    passed = run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    assert passed.health is not None and passed.health.status == "passing"
    assert passed.transition is not None and passed.transition.events == ()

    registry.set_users({"deployer": "rotated-by-the-registry-admin"})
    failed = run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    assert failed.health is not None and failed.health.status == "failing"
    health = _health(lab_client, service_id)
    assert health["status"] == "failing"
    assert health["code"] == "auth_failed"
    assert health["failing_since"] == health["last_checked_at"]
    assert health["last_passed_at"] < health["failing_since"]
    [entry, *_] = _actions(lab_client, project_id)
    assert entry["action"] == "credentials.check_failed"
    assert entry["actor_email"] == "guara"
    assert entry["details"]["code"] == "auth_failed"

    # Still failing: failing_since stays, no second entry.
    run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    assert _health(lab_client, service_id)["failing_since"] == health["failing_since"]
    assert [e["action"] for e in _actions(lab_client, project_id)].count("credentials.check_failed") == 1

    registry.set_users({"deployer": PASSWORD})
    run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    recovered = _health(lab_client, service_id)
    assert (
        recovered["status"] == "passing" and recovered["code"] is None and recovered["failing_since"] is None
    )
    assert _actions(lab_client, project_id)[0]["action"] == "credentials.check_recovered"
    assert PASSWORD not in str(_actions(lab_client, project_id))


def test_check_now_counts_against_the_test_connection_limit(
    lab_client: ApiUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    _project_id, service_id = _service_with_credentials(lab_client, registry)  # one preflight
    statuses = []
    for _ in range(5):
        response = lab_client.post(f"/services/{service_id}/registry-credentials/check")
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert set(response.json()) == HEALTH_KEYS
            assert response.json()["status"] == "passing"
    assert statuses == [200, 200, 200, 200, 429]
    # Scheduled checks are the system's: never limited.
    for _ in range(3):
        result = run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
        assert result.health is not None and result.health.status == "passing"


def test_check_now_needs_credentials_and_a_service_of_ones_own(lab_client: ApiUser) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id)
    response = lab_client.post(f"/services/{service_id}/registry-credentials/check")
    assert response.status_code == 422
    assert response.json()["code"] == "no_credentials"
    assert lab_client.post(f"/services/{uuid.uuid4()}/registry-credentials/check").status_code == 404


def test_scheduled_check_skips_a_service_without_credentials(
    lab_client: ApiUser, lab_context: AppContext
) -> None:
    service_id = lab_client.service(lab_client.project())
    result = run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    assert result.health is None and result.transition is None


def test_expiry_date_is_saved_cleared_and_warned_about(
    lab_client: ApiUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    soon = utcnow().date() + timedelta(days=9)
    project_id, service_id = _service_with_credentials(lab_client, registry, expires_on=soon.isoformat())
    health = _health(lab_client, service_id)
    assert health["expires_on"] == soon.isoformat()
    assert health["status"] == "passing" and health["code"] == "expires_soon"
    assert "in 9 days" in health["message"]

    run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    run(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id))
    expiring = [e for e in _actions(lab_client, project_id) if e["action"] == "credentials.expiring"]
    assert len(expiring) == 1 and expiring[0]["details"]["expires_on"] == soon.isoformat()

    # Leaving expires_on out keeps it; null clears it.
    kept = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": registry.registry.host, "skip_verification": True},
    )
    assert kept.json()["health"]["expires_on"] == soon.isoformat()
    far = date.today() + timedelta(days=200)
    later = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": registry.registry.host, "skip_verification": True, "expires_on": far.isoformat()},
    )
    assert later.json()["health"]["expires_on"] == far.isoformat()
    assert later.json()["health"]["code"] is None
    cleared = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": registry.registry.host, "skip_verification": True, "expires_on": None},
    )
    assert cleared.json()["health"]["expires_on"] is None


@pytest.mark.parametrize("expires_on", ["next tuesday", "0001-01-01", "1969-12-31", "2026-02-30", 20261201])
def test_a_malformed_expiry_date_is_a_clear_error(lab_client: ApiUser, expires_on: object) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id)
    response = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={
            "registry": "ghcr.io",
            "username": "u",
            "password": "p",
            "skip_verification": True,  # nothing may reach out: the date alone is refused
            "expires_on": expires_on,
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] in ("invalid_input", "validation_error")
    assert lab_client.get(f"/services/{service_id}").json()["registry_credentials"] is None


def _check_on_app_loop(client: ApiUser, context: AppContext, service_id: str) -> health_checks.CheckResult:
    """A scheduled check on the app's event loop (where an auto-deploy's task lives on)."""
    portal = client.http.portal
    assert portal is not None
    check = functools.partial(health_checks.check_service, context, service_id=uuid.UUID(service_id))
    return portal.call(check)


def test_a_moved_tag_is_noticed_and_auto_deployed_only_when_opted_in(
    lab_client: ApiUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    project_id, service_id = _service_with_credentials(lab_client, registry)
    deployed = deploy_and_wait(lab_client.post, lab_client.get, service_id)
    assert deployed["status"] == "succeeded", deployed
    _check_on_app_loop(lab_client, lab_context, service_id)
    service = lab_client.get(f"/services/{service_id}").json()
    assert service["tag_moved"] is None and service["auto_deploy_on_tag_move"] is False

    moved = registry.registry.push_image("acme/api:v1", files={"etc/release": b"2\n"})
    assert moved != deployed["digest"]
    _check_on_app_loop(lab_client, lab_context, service_id)
    notice = lab_client.get(f"/services/{service_id}").json()["tag_moved"]
    assert notice == {"tag": "v1", "digest": moved, "deployed_digest": deployed["digest"]}
    assert [d["id"] for d in lab_client.get(f"/services/{service_id}/deployments").json()] == [deployed["id"]]
    _check_on_app_loop(lab_client, lab_context, service_id)  # announced once per digest
    entries = [e for e in _actions(lab_client, project_id) if e["action"] == "service.tag_moved"]
    assert len(entries) == 1 and entries[0]["details"]["auto_deploy"] is False
    assert entries[0]["actor_email"] == "guara"

    opted = lab_client.request("PATCH", f"/services/{service_id}", json={"auto_deploy_on_tag_move": True})
    assert opted.status_code == 200 and opted.json()["auto_deploy_on_tag_move"] is True
    again = registry.registry.push_image("acme/api:v1", files={"etc/release": b"3\n"})
    _check_on_app_loop(lab_client, lab_context, service_id)
    history = lab_client.get(f"/services/{service_id}/deployments").json()
    assert len(history) == 2
    done = settled_deployment(lab_client.get, service_id, history[0]["id"])
    assert done["status"] == "succeeded" and done["digest"] == again
    assert lab_client.get(f"/services/{service_id}").json()["tag_moved"] is None
    actions = [e["action"] for e in _actions(lab_client, project_id)]
    assert actions.count("service.tag_moved") == 2 and "service.deploy" in actions


def test_a_multi_platform_tag_is_not_taken_for_a_moved_one(
    lab_client: ApiUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    registry.registry.push_index("acme/api:v1", platforms=("linux/amd64", "linux/arm64"))
    _project_id, service_id = _service_with_credentials(lab_client, registry)
    deployed = deploy_and_wait(lab_client.post, lab_client.get, service_id)
    assert deployed["status"] == "succeeded", deployed
    assert deployed["digest"] != registry.registry.images["acme/api:v1"]  # the platform's manifest
    _check_on_app_loop(lab_client, lab_context, service_id)
    assert lab_client.get(f"/services/{service_id}").json()["tag_moved"] is None
