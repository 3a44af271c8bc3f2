"""Render a service for Kubernetes: its project's Namespace, a pull Secret, and a Deployment.

- Namespace ``guara-<first 12 hex digits of the project id>``: one per project.
- Secret ``<service>-registry`` of type ``kubernetes.io/dockerconfigjson`` with credentials for the
  image's registry only (Docker Hub under ``https://index.docker.io/v1/``, the key kubelet looks up);
  absent when the image is pulled anonymously.
- Deployment ``<service>``: one container running the pinned ``registry/repository@sha256:…``, with
  ``imagePullSecrets`` naming the Secret (when there is one) and a nodeSelector for the resolved
  platform (the pinned manifest is for that platform only).

``RenderedWorkload.objects`` hold the real Secret and exist only in memory, for apply;
``RenderedWorkload.redacted()`` is what may be stored and shown. Every object is checked against the
Kubernetes object schemas (``guara.deploy.validate``) before it leaves this module.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from guara.registry import DOCKER_HUB, RegistryLocation, same_registry

from .resolve import ResolvedImage
from .validate import validate_objects

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
DOCKERCONFIGJSON = ".dockerconfigjson"
REDACTED_VALUE = "[REDACTED]"
MANAGED_BY = "guara"
LABEL_PREFIX = "guara.dev"

KubernetesObject = dict[str, Any]


@dataclass(frozen=True)
class PullCredentials:
    """Credentials to put in the pull Secret. ``registry`` is where they were saved for."""

    registry: RegistryLocation
    username: str
    password: SecretStr = field(repr=False)


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class WorkloadNames:
    namespace: str
    deployment: str
    secret: str | None

    @property
    def pull_secret(self) -> str:
        """The pull Secret's name, whether this deploy has one or must remove an old one."""
        return f"{self.deployment}-registry"

    @property
    def pull_secret_ref(self) -> ObjectRef:
        return ObjectRef("Secret", self.namespace, self.pull_secret)


@dataclass(frozen=True)
class RenderedWorkload:
    """The objects to apply, in apply order (Namespace, NetworkPolicy, Secret, Deployment). Holds a
    secret: never log, store or return ``objects``; use ``redacted()``."""

    objects: tuple[KubernetesObject, ...] = field(repr=False)
    names: WorkloadNames

    @property
    def absent(self) -> tuple[ObjectRef, ...]:
        """Objects that must not exist after this deploy: an anonymous deploy removes the pull Secret
        of earlier deploys, so removed credentials do not live on in the cluster."""
        if self.names.secret is not None:
            return ()
        return (self.names.pull_secret_ref,)

    def redacted(self) -> list[KubernetesObject]:
        """A deep copy with every Secret's ``data`` values replaced by ``[REDACTED]``."""
        copies: list[KubernetesObject] = []
        for obj in self.objects:
            item = copy.deepcopy(obj)
            if item.get("kind") == "Secret":
                item["data"] = dict.fromkeys(item.get("data", {}), REDACTED_VALUE)
                annotations = item["metadata"].setdefault("annotations", {})
                annotations[f"{LABEL_PREFIX}/redacted"] = "data"
            copies.append(item)
        return copies

    def __repr__(self) -> str:
        return f"RenderedWorkload(names={self.names!r}, objects=<{len(self.objects)} objects>)"


def pull_secret_ref(project_id: uuid.UUID, service_name: str) -> ObjectRef:
    """Where a service's pull Secret lives in the cluster (present or not)."""
    return WorkloadNames(
        namespace=namespace_for(project_id), deployment=service_name, secret=None
    ).pull_secret_ref


def workload_refs(project_id: uuid.UUID, service_name: str) -> tuple[ObjectRef, ...]:
    """Everything a service's deploys leave in the cluster of that service alone: its Deployment and
    its pull Secret (the Namespace and NetworkPolicy are the project's)."""
    names = WorkloadNames(namespace=namespace_for(project_id), deployment=service_name, secret=None)
    return (ObjectRef("Deployment", names.namespace, names.deployment), names.pull_secret_ref)


def namespace_for(project_id: uuid.UUID) -> str:
    return f"guara-{project_id.hex[:12]}"


def dockerconfig_key(registry: RegistryLocation) -> str:
    """The ``auths`` key kubelet matches the image's registry against."""
    return DOCKER_HUB_CONFIG_KEY if registry.host == DOCKER_HUB else registry.host


def dockerconfigjson(registry: RegistryLocation, username: str, password: SecretStr) -> str:
    """The base64 ``.dockerconfigjson`` value (a secret)."""
    secret = password.get_secret_value()
    auth = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    config = {"auths": {dockerconfig_key(registry): {"username": username, "password": secret, "auth": auth}}}
    return base64.b64encode(json.dumps(config, separators=(",", ":")).encode()).decode("ascii")


def render_workload(
    image: ResolvedImage,
    *,
    project_id: uuid.UUID,
    service_id: uuid.UUID,
    service_name: str,
    deployment_id: uuid.UUID,
    credentials: PullCredentials | None,
) -> RenderedWorkload:
    """Render and validate the objects for one deploy of a service."""
    if credentials is not None and not same_registry(credentials.registry, image.reference):
        raise ValueError("pull credentials must be for the image's registry")
    namespace = namespace_for(project_id)
    labels = {
        "app.kubernetes.io/name": service_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{LABEL_PREFIX}/project-id": str(project_id),
        f"{LABEL_PREFIX}/service-id": str(service_id),
    }
    names = WorkloadNames(namespace=namespace, deployment=service_name, secret=None)
    if credentials is not None:
        names = WorkloadNames(namespace=namespace, deployment=service_name, secret=names.pull_secret)
    objects: list[KubernetesObject] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    f"{LABEL_PREFIX}/project-id": str(project_id),
                },
            },
        }
    ]
    objects.append(_isolation_policy(namespace, project_id))
    if credentials is not None:
        objects.append(
            render_pull_secret(
                project_id=project_id,
                service_id=service_id,
                service_name=service_name,
                credentials=credentials,
            )
        )
    objects.append(_deployment(image, names, labels, deployment_id))
    validate_objects(objects)
    return RenderedWorkload(objects=tuple(objects), names=names)


def render_pull_secret(
    *, project_id: uuid.UUID, service_id: uuid.UUID, service_name: str, credentials: PullCredentials
) -> KubernetesObject:
    """A service's pull Secret alone (a secret: never log or return it), as a deploy renders it; also
    what re-applying a fresh cloud registry token writes."""
    ref = pull_secret_ref(project_id, service_name)
    labels = {
        "app.kubernetes.io/name": service_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{LABEL_PREFIX}/project-id": str(project_id),
        f"{LABEL_PREFIX}/service-id": str(service_id),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": labels},
        "data": {
            DOCKERCONFIGJSON: dockerconfigjson(
                credentials.registry, credentials.username, credentials.password
            )
        },
    }


ISOLATION_POLICY = "guara-project-isolation"


def _isolation_policy(namespace: str, project_id: uuid.UUID) -> KubernetesObject:
    """One per project namespace: pods accept traffic only from their own project, and may not reach
    link-local addresses (cloud metadata, whose credentials could expose other projects)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": ISOLATION_POLICY,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                f"{LABEL_PREFIX}/project-id": str(project_id),
            },
        },
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [
                {
                    "to": [
                        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
                        {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10"]}},
                    ]
                }
            ],
        },
    }


def _deployment(
    image: ResolvedImage, names: WorkloadNames, labels: Mapping[str, str], deployment_id: uuid.UUID
) -> KubernetesObject:
    service_id = labels[f"{LABEL_PREFIX}/service-id"]
    annotations = {
        f"{LABEL_PREFIX}/deployment-id": str(deployment_id),
        f"{LABEL_PREFIX}/image": str(image.reference),
    }
    if image.index_digest is not None:
        annotations[f"{LABEL_PREFIX}/index-digest"] = image.index_digest
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": names.deployment,
                "image": image.pinned,
                "imagePullPolicy": "IfNotPresent",
                # Harmless for ordinary images, and closes setuid escalation paths.
                "securityContext": {"allowPrivilegeEscalation": False},
            }
        ],
        # The pinned manifest runs on this platform only.
        "nodeSelector": {
            "kubernetes.io/os": image.platform.os,
            "kubernetes.io/arch": image.platform.architecture,
        },
        # Workloads get no token for the cluster's API unless they ask for it.
        "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    if names.secret is not None:
        pod_spec["imagePullSecrets"] = [{"name": names.secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment,
            "namespace": names.namespace,
            "labels": dict(labels),
            "annotations": annotations,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {f"{LABEL_PREFIX}/service-id": service_id}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }
