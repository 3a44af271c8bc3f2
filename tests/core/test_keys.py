"""Master-key rotation through core: resumable batches, running servers notice a rotated key file."""

from __future__ import annotations

import base64
import secrets
import uuid

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from guara.core import accounts, keys, projects, services
from guara.core.credentials import PASSWORD_FIELD, _open_password
from guara.core.platform import Platform
from guara.secrets import ProjectKeys, seal
from guara.store.models import RegistryCredential
from tests.conftest import build_platform


def _seed(platform: Platform, count: int) -> list[uuid.UUID]:
    with platform.db.session() as session:
        owner = accounts.create_user(session, email="k@example.com", password="long enough pw")
        project = projects.create_project(session, principal=owner, name="p")
        ids = []
        keyring = ProjectKeys(platform.keyring)
        for i in range(count):
            service = services.create_service(
                session, principal=owner, project_id=project.id, name=f"s{i}", image="busybox"
            )
            envelope = seal(
                keyring,
                SecretStr(f"pw-{i}"),
                project_id=str(project.id),
                service_id=str(service.id),
                field=PASSWORD_FIELD,
            )
            session.add(
                RegistryCredential(
                    service_id=service.id,
                    project_id=project.id,
                    registry_host="docker.io",
                    username="u",
                    password_sealed=envelope,
                    key_version=1,
                    verification="overridden",
                )
            )
            ids.append(service.id)
    return ids


def test_rotation_reseals_everything_and_old_processes_follow(settings_env: dict[str, str]) -> None:
    server = build_platform(settings_env)  # a running server, loaded before the rotation
    ids = _seed(server, 5)
    operator = build_platform(settings_env)  # `guara keys rotate` in another process
    report = keys.rotate(operator, batch_size=2)
    assert (report.version, report.resealed, report.resumed) == (2, 5, False)
    assert keys.status(operator) == {2: 5}
    with server.db.session() as session:
        rows = {r.service_id: r for r in session.scalars(select(RegistryCredential))}
    assert [_open_password(server, rows[i]).get_secret_value() for i in ids] == [f"pw-{n}" for n in range(5)]


def test_interrupted_rotation_resumes_without_a_new_version(settings_env: dict[str, str]) -> None:
    platform = build_platform(settings_env)
    _seed(platform, 5)
    calls = []

    def stop_after_first_batch(done: int) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        keys.rotate(platform, batch_size=2, on_progress=stop_after_first_batch)
    assert keys.status(platform) == {1: 3, 2: 2}
    report = keys.rotate(platform, batch_size=2)
    assert (report.version, report.resealed, report.resumed) == (2, 3, True)
    assert keys.status(platform) == {2: 5}


def test_rotation_with_environment_keys(settings_env: dict[str, str], master_key: str) -> None:
    old = build_platform({**settings_env, "GUARA_MASTER_KEY": master_key})
    _seed(old, 3)
    with pytest.raises(keys.RotationImpossible, match="v2:<new key>"):
        keys.rotate(old)  # nothing to re-seal, and guara cannot add a version to the environment
    new_key = base64.b64encode(secrets.token_bytes(32)).decode()
    both = build_platform({**settings_env, "GUARA_MASTER_KEY": f"v1:{master_key},v2:{new_key}"})
    report = keys.rotate(both)
    assert (report.version, report.resealed, report.resumed) == (2, 3, True)
    assert keys.status(both) == {2: 3}
