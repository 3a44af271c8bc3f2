"""Kubernetes rendering: validated against the official client's object models, secrets redacted."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import kubernetes.client
import pytest
from pydantic import SecretStr

from guara.deploy import (
    DOCKER_HUB_CONFIG_KEY,
    InvalidManifest,
    PullCredentials,
    ResolvedImage,
    parse_platform,
    render_workload,
    validate_objects,
)
from guara.registry import parse_image_reference, parse_registry

DIGEST = "sha256:" + "a" * 64
INDEX_DIGEST = "sha256:" + "b" * 64
PROJECT = uuid.UUID("0123456789abcdef0123456789abcdef")
SERVICE = uuid.uuid4()
PASSWORD = 'p@ss:w"o;rd ñ'


def _image(reference: str, *, platform: str = "linux/amd64", index: str | None = None) -> ResolvedImage:
    return ResolvedImage(
        reference=parse_image_reference(reference),
        digest=DIGEST,
        index_digest=index,
        platform=parse_platform(platform),
        config_digest="sha256:" + "c" * 64,
        with_credentials=True,
        elapsed_ms=5,
    )


def _render(reference: str, registry: str | None, **kwargs: Any) -> Any:
    credentials = (
        PullCredentials(parse_registry(registry), "robot$ci", SecretStr(PASSWORD)) if registry else None
    )
    return render_workload(
        _image(reference, **kwargs),
        project_id=PROJECT,
        service_id=SERVICE,
        service_name="web",
        deployment_id=uuid.uuid4(),
        credentials=credentials,
    )


def _deserialize(obj: dict[str, Any], model: str) -> Any:
    """What a client reading the object back from the API server would get."""
    return getattr(kubernetes.client, model).from_dict(obj)


def _kind(objects: Any, kind: str) -> dict[str, Any]:
    [found] = [obj for obj in objects if obj["kind"] == kind]
    return dict(found)


def test_private_rendering_matches_the_kubernetes_models() -> None:
    rendered = _render("ghcr.io/acme/web:v1", "ghcr.io", platform="linux/arm64", index=INDEX_DIGEST)
    namespace, policy, secret, deployment = rendered.objects
    isolation = _deserialize(policy, "V1NetworkPolicy")
    assert isolation.metadata.namespace == "guara-0123456789ab"
    assert isolation.spec.policy_types == ["Ingress", "Egress"]
    assert isolation.spec.ingress[0]._from[0].pod_selector is not None  # its own namespace only
    assert "169.254.0.0/16" in isolation.spec.egress[0].to[0].ip_block._except
    assert rendered.names.namespace == "guara-0123456789ab"
    ns = _deserialize(namespace, "V1Namespace")
    assert ns.metadata.name == "guara-0123456789ab"

    model = _deserialize(secret, "V1Secret")
    assert model.type == "kubernetes.io/dockerconfigjson"
    assert model.metadata.name == "web-registry"
    assert model.metadata.namespace == "guara-0123456789ab"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["ghcr.io"]
    entry = config["auths"]["ghcr.io"]
    assert entry["username"] == "robot$ci" and entry["password"] == PASSWORD
    assert base64.b64decode(entry["auth"]).decode() == f"robot$ci:{PASSWORD}"

    dep = _deserialize(deployment, "V1Deployment")
    assert isinstance(dep, kubernetes.client.V1Deployment)
    container = dep.spec.template.spec.containers[0]
    assert container.image == f"ghcr.io/acme/web@{DIGEST}"
    assert container.name == "web"
    assert [s.name for s in dep.spec.template.spec.image_pull_secrets] == ["web-registry"]
    assert dep.spec.template.spec.node_selector == {
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64",
    }
    assert dep.spec.template.spec.automount_service_account_token is False
    assert dep.spec.template.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert container.security_context.allow_privilege_escalation is False
    assert dep.spec.selector.match_labels == {"guara.dev/service-id": str(SERVICE)}
    labels = dep.spec.template.metadata.labels
    assert all(labels[k] == v for k, v in dep.spec.selector.match_labels.items())
    assert labels["app.kubernetes.io/managed-by"] == "guara"
    assert dep.metadata.annotations["guara.dev/index-digest"] == INDEX_DIGEST


def test_docker_hub_credentials_use_the_key_kubelet_expects() -> None:
    rendered = _render("busybox:1.36", "index.docker.io")
    secret = _kind(rendered.objects, "Secret")
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == [DOCKER_HUB_CONFIG_KEY] == ["https://index.docker.io/v1/"]
    image = _kind(rendered.objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"docker.io/library/busybox@{DIGEST}"


def test_registry_with_a_port_keys_the_secret_by_host_and_port() -> None:
    rendered = _render("registry.example.com:5000/team/app:v2", "https://registry.example.com:5000")
    secret = _kind(rendered.objects, "Secret")
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["registry.example.com:5000"]


def test_anonymous_rendering_has_no_secret_and_no_pull_secrets() -> None:
    rendered = _render("ghcr.io/acme/web:v1", None)
    assert [o["kind"] for o in rendered.objects] == ["Namespace", "NetworkPolicy", "Deployment"]
    assert rendered.names.secret is None
    pod = _kind(rendered.objects, "Deployment")["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in pod
    validate_objects(rendered.objects)


def test_redacted_copy_hides_the_secret_and_leaves_the_real_one_alone() -> None:
    rendered = _render("ghcr.io/acme/web:v1", "ghcr.io")
    redacted = rendered.redacted()
    text = json.dumps(redacted)
    for form in (PASSWORD, base64.b64encode(f"robot$ci:{PASSWORD}".encode()).decode(), "robot$ci"):
        assert form not in text
    assert _kind(rendered.objects, "Secret")["data"][".dockerconfigjson"] not in text
    assert _kind(redacted, "Secret")["data"] == {".dockerconfigjson": "[REDACTED]"}
    assert _kind(redacted, "Secret")["metadata"]["annotations"] == {"guara.dev/redacted": "data"}
    assert "annotations" not in _kind(rendered.objects, "Secret")["metadata"]
    assert _kind(redacted, "Deployment") == _kind(rendered.objects, "Deployment")
    assert PASSWORD not in repr(rendered)
    validate_objects(redacted)


def test_credentials_for_another_registry_are_refused() -> None:
    with pytest.raises(ValueError):
        _render("ghcr.io/acme/web:v1", "quay.io")


def test_validation_refuses_what_the_schemas_refuse() -> None:
    namespace, _policy, secret, deployment = _render("ghcr.io/acme/web:v1", "ghcr.io").objects
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "1"
    with pytest.raises(InvalidManifest, match="replicas"):
        validate_objects([broken])
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["imagePullSecret"] = [{"name": "x"}]
    with pytest.raises(InvalidManifest):
        validate_objects([typo])
    nameless = json.loads(json.dumps(deployment))
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(InvalidManifest):
        validate_objects([nameless])
    bad_secret = json.loads(json.dumps(secret))
    bad_secret["data"] = {".dockerconfigjson": 12345}
    with pytest.raises(InvalidManifest) as caught:
        validate_objects([bad_secret])
    assert "12345" not in str(caught.value)
    with pytest.raises(InvalidManifest, match="not a kind"):
        validate_objects([{**namespace, "kind": "ConfigMap"}])
