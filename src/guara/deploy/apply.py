"""Apply rendered objects to a cluster, behind a one-method interface.

``KubernetesApplier`` uses the official ``kubernetes`` client: server-side apply (``PATCH`` with
``application/apply-patch+yaml``, field manager ``guara``, ``force=true`` so guara keeps ownership of
the fields it renders), in order: Namespace (created when missing, as apply creates),
NetworkPolicy, Secret, Deployment. The client is synchronous: each apply runs in a worker thread.

Client exceptions are translated into ``ApplyFailed`` here and nowhere else. The API server's answer is
quoted (its Status ``message``) only for objects that hold no secret: a refused Secret may be echoed
back in the answer. Response bodies are never deserialised (``_preload_content=False``), so the
applied Secret does not come back into this process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import anyio.to_thread

from .errors import ApplyFailed
from .render import ObjectRef

logger = logging.getLogger("guara.deploy.apply")

FIELD_MANAGER = "guara"
APPLY_PATCH = "application/apply-patch+yaml"
REQUEST_TIMEOUT_S = 30.0
_MAX_QUOTED = 300


class ManifestApplier(Protocol):
    """Something that makes a cluster hold these objects (the real ones, Secret data included) and
    not hold the ``absent`` ones (deleting what exists; a missing one is fine)."""

    async def apply(
        self, objects: Sequence[Mapping[str, Any]], *, absent: Sequence[ObjectRef] = ()
    ) -> None: ...


class KubernetesApplier:
    """Server-side apply with the official client. ``configuration`` is a
    ``kubernetes.client.Configuration``, or a callable returning one (loaded at apply time, so a
    missing kubeconfig fails the deploy with a reason instead of the server start)."""

    def __init__(self, configuration: Any | Callable[[], Any], *, request_timeout: float = REQUEST_TIMEOUT_S):
        self._configuration = configuration
        self._request_timeout = request_timeout

    @classmethod
    def from_environment(cls, *, kubeconfig: str | os.PathLike[str] | None = None) -> KubernetesApplier:
        """In-cluster service account when running in a pod, else ``kubeconfig`` or, when None, the
        client's default (``KUBECONFIG`` as it was when the process started, else ~/.kube/config)."""
        return cls(functools.partial(load_configuration, kubeconfig=kubeconfig))

    async def apply(self, objects: Sequence[Mapping[str, Any]], *, absent: Sequence[ObjectRef] = ()) -> None:
        await anyio.to_thread.run_sync(self._apply_all, list(objects), list(absent))

    def _apply_all(self, objects: list[Mapping[str, Any]], absent: list[ObjectRef]) -> None:
        import kubernetes.client

        configuration = self._configuration() if callable(self._configuration) else self._configuration
        with kubernetes.client.ApiClient(configuration) as api:
            for obj in objects:
                self._apply_one(api, obj)
            for ref in absent:
                self._delete(api, ref)

    def _delete(self, api: Any, ref: ObjectRef) -> None:
        import kubernetes.client

        # A deleted service takes its Deployment along, a deleted project its Namespace (and with it
        # everything in it); any other kind is left to the operator.
        core = kubernetes.client.CoreV1Api(api)
        timeout = self._request_timeout
        with _translate_errors(ref.kind, ref.name, ref.namespace, missing_ok=True):
            if ref.kind == "Secret":
                _discard(
                    core.delete_namespaced_secret(
                        ref.name, ref.namespace, _preload_content=False, _request_timeout=timeout
                    )
                )
            elif ref.kind == "Deployment":
                apps = kubernetes.client.AppsV1Api(api)
                _discard(
                    apps.delete_namespaced_deployment(
                        ref.name, ref.namespace, _preload_content=False, _request_timeout=timeout
                    )
                )
            elif ref.kind == "Namespace":
                _discard(core.delete_namespace(ref.name, _preload_content=False, _request_timeout=timeout))
            else:
                raise ApplyFailed(f"guara does not delete {ref.kind} objects", kind=ref.kind, name=ref.name)
            logger.info("deleted %s %s/%s", ref.kind, ref.namespace, ref.name)

    def _apply_one(self, api: Any, obj: Mapping[str, Any]) -> None:
        import kubernetes.client

        kind = str(obj.get("kind"))
        metadata = obj.get("metadata", {})
        name = str(metadata.get("name"))
        namespace = metadata.get("namespace")
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY_PATCH,
            "_preload_content": False,
            "_request_timeout": self._request_timeout,
        }
        body = dict(obj)
        core = kubernetes.client.CoreV1Api(api)
        response: Any
        with _translate_errors(kind, name, str(namespace or "")):
            if kind == "Namespace":
                response = core.patch_namespace(name, body, **options)
            elif kind == "Secret":
                response = core.patch_namespaced_secret(name, namespace, body, **options)
            elif kind == "NetworkPolicy":
                networking = kubernetes.client.NetworkingV1Api(api)
                response = networking.patch_namespaced_network_policy(name, namespace, body, **options)
            elif kind == "Deployment":
                apps = kubernetes.client.AppsV1Api(api)
                response = apps.patch_namespaced_deployment(name, namespace, body, **options)
            else:
                raise ApplyFailed(f"guara does not apply {kind} objects", kind=kind, name=name)
            _discard(response)
        logger.info("applied %s %s%s", kind, f"{namespace}/" if namespace else "", name)


def load_configuration(*, kubeconfig: str | os.PathLike[str] | None = None) -> Any:
    """A client configuration: the explicit ``kubeconfig`` when given (and only it), else the pod's
    service account, else the client's default kubeconfig. The kubeconfig is only read: refreshed
    tokens are not written back to it."""
    import kubernetes.client
    import kubernetes.config

    loaders: Any = kubernetes.config  # its loaders are untyped
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None:
        try:
            loaders.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            pass
        else:
            return configuration
    try:
        loaders.load_kube_config(
            config_file=None if kubeconfig is None else os.fspath(kubeconfig),
            client_configuration=configuration,
            persist_config=False,
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        where = os.fspath(kubeconfig) if kubeconfig is not None else "KUBECONFIG or ~/.kube/config"
        raise ApplyFailed(
            f"no usable Kubernetes configuration (service account in a pod, or the kubeconfig {where}): "
            f"{type(exc).__name__}",
            kind="configuration",
            name="",
        ) from None
    return configuration


def _discard(response: Any) -> None:
    drain = getattr(response, "drain_conn", None) or getattr(response, "release_conn", None)
    if callable(drain):
        drain()


@contextlib.contextmanager
def _translate_errors(kind: str, name: str, namespace: str, *, missing_ok: bool = False) -> Iterator[None]:
    """The one place where kubernetes-client and urllib3 exceptions become ApplyFailed (a 404 is
    success with ``missing_ok``: deleting what is already gone)."""
    import kubernetes.client.exceptions
    import urllib3.exceptions

    where = f"{kind} {namespace + '/' if namespace else ''}{name}"
    try:
        yield
    except ApplyFailed:
        raise
    except kubernetes.client.exceptions.ApiException as exc:
        status = exc.status if isinstance(exc.status, int) else None
        if missing_ok and status == 404:
            return
        detail = "" if kind == "Secret" else _status_message(exc.body)
        message = f"the Kubernetes API refused {where} ({status} {exc.reason or ''}".rstrip() + ")"
        if detail:
            message += f": {detail}"
        raise ApplyFailed(message, kind=kind, name=name, status=status) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ApplyFailed(
            f"could not reach the Kubernetes API to apply {where} ({type(exc).__name__})",
            kind=kind,
            name=name,
        ) from None


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status answer, cut short and made printable."""
    if not isinstance(body, str | bytes):
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    if not isinstance(message, str):
        return ""
    printable = "".join(ch if ch.isprintable() else " " for ch in message)
    return printable[:_MAX_QUOTED]
