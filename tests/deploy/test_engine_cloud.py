"""Cloud registry credentials on a real container engine: each deploy exchanges the key and hands the
engine that one fresh login (nothing to refresh), and neither the key nor the login stays anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.test_engine_e2e import Guara, _body, engine_env
from tests.lab.apps import APP_V1, AppImages
from tests.lab.cloud import ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN, GoogleTokenServer, MotoAws
from tests.lab.engines import EngineHandle, grep_engine_state
from tests.support import cli_user_with_token, serving

__all__ = ["engine_env"]

pytestmark = [pytest.mark.engine, pytest.mark.lab]


@pytest.fixture
def cloud_guara(
    engine_env: dict[str, str], engine: EngineHandle, moto_aws: MotoAws, tmp_path: Path
) -> Iterator[Guara]:
    env = {**engine_env, "GUARA_AWS_ENDPOINT_URL": moto_aws.url}
    token = cli_user_with_token(env, "owner@example.com", "long enough pw")
    with serving(env, tmp_path / "guara.log") as served:
        api = httpx.Client(
            base_url=served.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        yield Guara(served, api, env, engine, tmp_path / "guara.log")
        api.close()


def test_cloud_keys_deploy_on_the_engine_with_a_fresh_login_each_time(
    cloud_guara: Guara, app_images: AppImages, moto_aws: MotoAws, google_token_server: GoogleTokenServer
) -> None:
    guara = cloud_guara
    cases = [
        (
            "ecr",
            app_images.basic,
            {
                "kind": "aws_ecr",
                "aws_access_key_id": moto_aws.puller.access_key_id,
                "aws_secret_access_key": moto_aws.puller.secret_access_key,
                "aws_region": "eu-west-1",
            },
        ),
        ("gar", app_images.token, {"kind": "google", "google_json_key": google_token_server.json_key()}),
    ]
    for name, source, creds in cases:
        project_id = guara.api.post("/projects", json={"name": name}).json()["id"]
        created = guara.api.post(
            f"/projects/{project_id}/services",
            json={
                "name": "web",
                "image": source.tag_ref(APP_V1),
                "registry_credentials": {"registry": source.host, **creds},
            },
        )
        assert created.status_code == 201, created.text
        service_id = created.json()["id"]
        for _ in range(2):  # a second deploy exchanges again: nothing was kept to expire
            done = guara.deploy(service_id)
            assert done["status"] == "running", done["message"]
            assert done["with_credentials"] is True
            assert _body(done["url"]) == app_images.bodies[APP_V1]
    secrets = [moto_aws.puller.secret_access_key, ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN]
    assert grep_engine_state(guara.engine, [s.encode() for s in secrets]) == []
