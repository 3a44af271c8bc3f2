"""Master-key rotation through core: resumable batches, running servers notice a rotated key file."""

from __future__ import annotations

import base64
import secrets
import uuid

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from guara.context import AppContext
from guara.core import accounts, keys, projects, services
from guara.core.credentials import PASSWORD_FIELD, _open_password
from guara.secrets import ProjectKeys, seal
from guara.store.models import RegistryCredential
from tests.conftest import build_context
from tests.support import run


def _seed(context: AppContext, count: int) -> list[uuid.UUID]:
    owner = run(accounts.create_user, context, email="k@example.com", password="long enough pw")
    project = run(projects.create_project, context, owner, name="p")
    services_ = [
        run(services.create_service, context, owner, project_id=project.id, name=f"s{i}", image="busybox")
        for i in range(count)
    ]
    with context.db.session() as session:
        ids = []
        keyring = ProjectKeys(context.keyring)
        for i, service in enumerate(services_):
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
    server = build_context(settings_env)  # a running server, loaded before the rotation
    ids = _seed(server, 5)
    operator = build_context(settings_env)  # `guara keys rotate` in another process
    report = run(keys.rotate, operator, batch_size=2)
    assert (report.version, report.resealed, report.resumed) == (2, 5, False)
    assert run(keys.status, operator) == {2: 5}
    with server.db.session() as session:
        rows = {r.service_id: r for r in session.scalars(select(RegistryCredential))}
    assert [_open_password(server, rows[i]).get_secret_value() for i in ids] == [f"pw-{n}" for n in range(5)]


def test_interrupted_rotation_resumes_without_a_new_version(settings_env: dict[str, str]) -> None:
    context = build_context(settings_env)
    _seed(context, 5)
    calls = []

    def stop_after_first_batch(done: int) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(keys.rotate, context, batch_size=2, on_progress=stop_after_first_batch)
    assert run(keys.status, context) == {1: 3, 2: 2}
    report = run(keys.rotate, context, batch_size=2)
    assert (report.version, report.resealed, report.resumed) == (2, 3, True)
    assert run(keys.status, context) == {2: 5}


def test_rotation_with_environment_keys(settings_env: dict[str, str], master_key: str) -> None:
    old = build_context({**settings_env, "GUARA_MASTER_KEY": master_key})
    _seed(old, 3)
    with pytest.raises(keys.RotationImpossible, match="v2:<new key>"):
        run(keys.rotate, old)  # nothing to re-seal, and guara cannot add a version to the environment
    new_key = base64.b64encode(secrets.token_bytes(32)).decode()
    both = build_context({**settings_env, "GUARA_MASTER_KEY": f"v1:{master_key},v2:{new_key}"})
    report = run(keys.rotate, both)
    assert (report.version, report.resealed, report.resumed) == (2, 3, True)
    assert run(keys.status, both) == {2: 3}


def test_rotation_reseals_webhook_signing_secrets(settings_env: dict[str, str]) -> None:
    from guara.core import webhooks
    from guara.store.models import ProjectWebhook

    context = build_context(settings_env)
    owner = run(accounts.create_user, context, email="w@example.com", password="long enough pw")
    project = run(projects.create_project, context, owner, name="p")
    secret = SecretStr("whsec-rotate-me-1234567890")
    run(
        webhooks.set_webhook,
        context,
        owner,
        project_id=project.id,
        url="https://hooks.example.com/",
        secret=secret,
    )
    assert run(keys.status, context) == {1: 1}
    report = run(keys.rotate, context)
    assert report.resealed == 1 and run(keys.status, context) == {2: 1}
    with context.db.session() as session:
        row = session.get(ProjectWebhook, project.id)
        assert row is not None and row.key_version == 2
        target = webhooks._start(context, session, project.id, uuid.uuid4(), "credentials.failing")
    assert target is not None and target.secret.get_secret_value() == secret.get_secret_value()
