"""``/metrics`` counts what operators alert on, by exactly the events that happened; every answer has a
request id. Counters live for the whole test process, so each test compares two scrapes."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.lab import Lab
from tests.support import ApiUser, settled_deployment

pytestmark = pytest.mark.lab

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: ApiUser) -> Samples:
    response = client.http.get("/metrics")  # no Authorization: off the API's auth, like a probe
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(
    before: Samples, after: Samples, prefix: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples named ``prefix...`` whose value changed, and by how much."""
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0].startswith(prefix) and not key[0].endswith("_created") and value != before.get(key, 0.0)
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_counters_move_by_exactly_the_tests_deploys_and_refusals(lab_client: ApiUser, lab: Lab) -> None:
    image = lab.token.ref("acme/api:v1")
    creds = {"registry": lab.token.host, "username": "alice", "password": lab.token.users["alice"]}
    project_id = lab_client.project()
    created = lab_client.post(
        f"/projects/{project_id}/services",
        json={"name": "api", "image": image, "registry_credentials": creds},
    )
    assert created.status_code == 201, created.text
    service_id = created.json()["id"]
    before = scrape(lab_client)

    passed = lab_client.post("/registry/test", json={"image": image, **creds})
    failed = lab_client.post("/registry/test", json={"image": image, **creds, "password": "wrong"})
    assert (passed.json()["ok"], failed.json()["code"]) == (True, "auth_failed")
    started = lab_client.post(f"/services/{service_id}/deployments")
    assert started.status_code == 202, started.text
    assert settled_deployment(lab_client.get, service_id, started.json()["id"])["status"] == "succeeded"
    after = scrape(lab_client)

    assert moved(before, after, "guara_preflights_total") == {
        ("guara_preflights_total", labels(code="ok")): 1,
        ("guara_preflights_total", labels(code="auth_failed")): 1,
    }
    assert moved(before, after, "guara_preflight_duration_seconds_count") == {
        ("guara_preflight_duration_seconds_count", labels()): 2
    }
    assert moved(before, after, "guara_deployments_total") == {
        ("guara_deployments_total", labels(status="succeeded")): 1
    }
    assert moved(before, after, "guara_deployment_duration_seconds_count") == {
        ("guara_deployment_duration_seconds_count", labels()): 1
    }
    requests = moved(before, after, "guara_http_requests_total")
    assert (
        requests[
            ("guara_http_requests_total", labels(method="POST", route="/api/v1/registry/test", status="200"))
        ]
        == 2
    )
    deploy_route = "/api/v1/services/{service_id}/deployments"
    assert (
        requests[("guara_http_requests_total", labels(method="POST", route=deploy_route, status="202"))] == 1
    )
    assert moved(before, after, "guara_rate_limited_total") == {}
    assert after[("guara_secrets_sealed", labels(key_version="1"))] == 1
    # Labels hold route templates, never the ids or text of a request.
    text = lab_client.http.get("/metrics").text
    assert service_id not in text and project_id not in text and "alice" not in text

    # Five preflights a minute: the verified save, the two tests, and two more; the next is refused.
    for _ in range(2):
        assert lab_client.post("/registry/test", json={"image": image, **creds}).status_code == 200
    assert lab_client.post("/registry/test", json={"image": image, **creds}).status_code == 429
    limited = moved(after, scrape(lab_client), "guara_")
    assert limited[("guara_rate_limited_total", labels(limit="preflight"))] == 1
    assert limited[("guara_preflights_total", labels(code="ok"))] == 2
    route = "/api/v1/registry/test"
    assert limited[("guara_http_requests_total", labels(method="POST", route=route, status="429"))] == 1


def test_every_answer_carries_a_request_id(client: ApiUser) -> None:
    given = client.get("/projects", headers={"X-Request-ID": "trace-42.a:b_c"})
    assert given.headers["x-request-id"] == "trace-42.a:b_c"
    made = [
        client.get("/projects"),
        client.http.get("/api/v1/projects"),  # 401
        client.get("/nowhere"),  # 404
        client.post("/projects", json={}),  # 422
        client.http.get("/login"),  # a dashboard page
        client.http.get("/healthz"),
    ]
    ids = [response.headers["x-request-id"] for response in made]
    assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in ids), ids
    assert len(set(ids)) == len(ids)
    # A request id that could forge log lines or fill them is replaced, not echoed.
    for hostile in ("has space", "x" * 65, "a\tb", "ümlaut", ""):
        answered = client.get("/projects", headers={"X-Request-ID": hostile.encode("utf-8")})
        assert answered.headers["x-request-id"] != hostile
        assert len(answered.headers["x-request-id"]) == 32


def test_metrics_need_no_token_and_hold_no_user_input(client: ApiUser) -> None:
    client.http.get("/api/v1/services/not-a-uuid/deployments/<script>")
    client.http.get("/static/../../etc/passwd")
    text = client.http.get("/metrics").text
    assert "not-a-uuid" not in text and "<script>" not in text and "passwd" not in text
    assert (
        'route="unmatched"' in text
        or 'route="/api/v1/services/{service_id}/deployments/{deployment_id}"' in text
    )
