"""Check rendered objects against the Kubernetes object schemas, with the official client's models.

No cluster is needed: each object is parsed by its generated model (strict types, unknown fields
refused, required fields enforced), then serialised back; the round trip must give the object
unchanged, so nothing was silently dropped or coerced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidManifest

# (apiVersion, kind) -> model class name in kubernetes.client
MODELS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}


def validate_objects(objects: Iterable[Mapping[str, Any]]) -> None:
    """Raise InvalidManifest for the first object the schemas refuse. Messages name fields, never
    values (a Secret's data must not end up in an error)."""
    import kubernetes.client
    from pydantic import ValidationError

    api: Any = kubernetes.client.ApiClient()  # partly untyped
    try:
        for obj in objects:
            kind = str(obj.get("kind"))
            name = str(obj.get("metadata", {}).get("name", "?"))
            key = (str(obj.get("apiVersion")), kind)
            if key not in MODELS:
                raise InvalidManifest(f"{key[0]} {kind} is not a kind guara renders")
            model = getattr(kubernetes.client, MODELS[key])
            try:
                parsed = model.from_dict(dict(obj))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                    for error in exc.errors(include_input=False, include_url=False)[:5]
                )
                raise InvalidManifest(
                    f"{kind} {name} does not match the Kubernetes schema: {problems}"
                ) from None
            if api.sanitize_for_serialization(parsed) != obj:
                raise InvalidManifest(
                    f"{kind} {name} does not survive a round trip through the Kubernetes model"
                )
    finally:
        api.close()
