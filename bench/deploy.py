"""Benchmark: a deploy through guara against the same work done with the bare Engine API, in one run.

For each engine (Podman, dockerd), with the private busybox app in the lab's token registry:

- guara: ``POST /services/{id}/deployments`` on a real ``guara serve`` (GUARA_RUNTIME=engine, SQLite)
  until the app's first HTTP 200 on the address the deployment reports. guara resolves the image with
  the stored credentials through its guard, pulls it by digest, starts the container, waits until it is
  ready, records it, and retires the previous container;
- the lower bound: the same image pulled by digest with the same credentials, created with the same
  container configuration on a network of its own (what the product requires of every container:
  ``guara.deploy.engine.container_config``), started, and polled until its first 200, with the
  Docker SDK's low-level client on the same engine.

Both sides run alternately, cold (the image removed from the engine first: what deploying a new tag or
digest costs, the goal: median ratio ≤ 1.2) and warm (the same digest again: guara's fixed cost
against the fastest possible start, reported for information).

Run: ``python -m bench.deploy [--rounds 7]`` from the repository root, as root.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx
from tests.lab.apps import APP_V1, AppImages, push_app_images
from tests.lab.engines import ENGINE_NAMES, EngineHandle, engine_problem, start_engine
from tests.lab.lab import start_lab
from tests.lab.trust import trust_registries
from tests.support import serving

from guara.core.engine_runtime import MEMORY_BYTES, NANO_CPUS, SERVICE_LABEL
from guara.deploy import PROJECT_LABEL, ContainerSpec
from guara.deploy.engine import container_config

GOAL = 1.2
POLL_S = 0.005
# How often the deployment's status is asked: each poll is an API request the server answers while
# it deploys, so polling as fast as the app probe would measure the polling (a person's page asks
# every 2 s; 25 ms adds 12 ms on average).
STATUS_POLL_S = 0.025
SETTLE_S = 1.0


# One client for every app probe of both sides: creating one (its TLS context) is nobody's deploy.
PROBE = httpx.Client(trust_env=False, timeout=2.0)


def _first_200(url: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if PROBE.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"no 200 from {url}")


BARE_NETWORK = "guara-bench-bare"


def _bare(client: docker.DockerClient, apps: AppImages) -> float:
    source = apps.token
    ref = source.ref(APP_V1)
    spec = ContainerSpec(
        name=f"bench-bare-{secrets.token_hex(4)}",
        image=ref,
        labels={PROJECT_LABEL: "bench"},
        network=BARE_NETWORK,
        port=8080,
        publish_ip="127.0.0.1",
        memory_bytes=MEMORY_BYTES,
        nano_cpus=NANO_CPUS,
    )
    started = time.perf_counter()
    repository, _, digest = ref.partition("@")
    for _line in client.api.pull(
        repository, tag=digest, auth_config=source.auth_config(), stream=True, decode=True
    ):
        pass
    created = client.api.create_container_from_config(container_config(spec), name=spec.name)
    client.api.start(created["Id"])
    ports = client.api.inspect_container(created["Id"])["NetworkSettings"]["Ports"]
    _first_200(f"http://127.0.0.1:{ports['8080/tcp'][0]['HostPort']}/")
    elapsed = time.perf_counter() - started
    client.api.remove_container(created["Id"], force=True)
    return elapsed


def _forget_image(client: docker.DockerClient, apps: AppImages) -> None:
    """A cold deploy: the image is not on the engine yet (a new tag or digest is never there)."""
    client.api.remove_image(apps.token.ref(APP_V1), force=True)


def _settle(client: docker.DockerClient) -> None:
    """Wait until the engine runs only one container per guara service and no bare one, then a moment
    for its clean-up: one side's removals never land inside the other side's measurement."""
    deadline = time.monotonic() + 30
    while True:
        containers = client.api.containers(all=True)
        services = [c["Labels"].get(SERVICE_LABEL) for c in containers if SERVICE_LABEL in c["Labels"]]
        bare = [c for c in containers if SERVICE_LABEL not in c["Labels"]]
        if not bare and len(services) == len(set(services)):
            break
        assert time.monotonic() < deadline, "containers are not going away"
        time.sleep(0.05)
    time.sleep(SETTLE_S)


def _through_guara(api: httpx.Client, service_id: str) -> float:
    started = time.perf_counter()
    created = api.post(f"/services/{service_id}/deployments")
    assert created.status_code == 202, created.text
    deployment_id = created.json()["id"]
    while True:
        body = api.get(f"/services/{service_id}/deployments/{deployment_id}").json()
        if body["status"] == "running":
            break
        assert body["status"] not in ("failed", "succeeded"), body["message"]
        time.sleep(STATUS_POLL_S)
    _first_200(body["url"])
    return time.perf_counter() - started


def _guara_env(root: Path, handle: EngineHandle, ca_file: Path) -> dict[str, str]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_") and k != "DOCKER_HOST"},
        "GUARA_DATA_DIR": str(root),
        "GUARA_DATABASE_URL": f"sqlite:///{root / 'guara.db'}",
        "GUARA_MASTER_KEY": key,
        "GUARA_SSRF_ALLOW": "127.0.0.0/8",
        "GUARA_EXTRA_CA_FILE": str(ca_file),
        "GUARA_RUNTIME": "engine",
        "GUARA_ENGINE_URL": handle.url,
        "GUARA_LOG_LEVEL": "warning",
    }


def _token(env: dict[str, str], email: str) -> str:
    cli = [sys.executable, "-m", "guara.cli"]
    subprocess.run(
        [*cli, "user", "create", "--email", email, "--password-stdin"],
        input="bench password\n",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    made = subprocess.run(
        [*cli, "token", "create", "--email", email], env=env, check=True, capture_output=True, text=True
    )
    return made.stdout.strip()


class Deployer:
    """Deploys through guara, spread over enough accounts to stay under the 10 deploys a minute each
    allows (each account has its own service of the same image)."""

    PER_ACCOUNT = 8

    def __init__(self, env: dict[str, str], url: str, apps: AppImages, deploys: int) -> None:
        self._services: list[tuple[httpx.Client, str]] = []
        source = apps.token
        for index in range(-(-deploys // self.PER_ACCOUNT)):
            token = _token(env, f"bench{index}@example.com")
            api = httpx.Client(
                base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            project = api.post("/projects", json={"name": f"bench {index}"}).json()["id"]
            service = api.post(
                f"/projects/{project}/services",
                json={
                    "name": "app",
                    "image": source.tag_ref(APP_V1),
                    "registry_credentials": {
                        "registry": source.host,
                        "username": source.username,
                        "password": source.password,
                    },
                },
            ).json()["id"]
            self._services.append((api, service))
        self._done = 0

    def deploy(self) -> float:
        api, service = self._services[self._done // self.PER_ACCOUNT]
        self._done += 1
        return _through_guara(api, service)

    def close(self) -> None:
        for api, _service in self._services:
            api.close()


def _engine(
    name: str, apps: AppImages, ca_file: Path, rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    with start_engine(name) as handle, tempfile.TemporaryDirectory() as tmp:  # type: ignore[arg-type]
        env = _guara_env(Path(tmp), handle, ca_file)
        client = handle.client()
        client.api.create_network(BARE_NETWORK, driver="bridge", labels={PROJECT_LABEL: "bench"})
        with serving(env, Path(tmp) / "guara.log") as served:
            deployer = Deployer(env, served.url, apps, deploys=2 * rounds + 1)
            deployer.deploy()  # imports done, connections open, network created
            _bare(client, apps)
            results: dict[str, tuple[list[float], list[float]]] = {"cold": ([], []), "warm": ([], [])}
            for _ in range(rounds):
                for kind in ("cold", "warm"):
                    through, bare = results[kind]
                    if kind == "cold":
                        _forget_image(client, apps)
                    through.append(deployer.deploy())
                    _settle(client)  # guara removes the container it replaced right after
                    if kind == "cold":
                        _forget_image(client, apps)
                    bare.append(_bare(client, apps))
                    _settle(client)
            deployer.close()
        client.close()
        return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, start_lab(Path(tmp) / "lab") as lab:
        apps = push_app_images(lab)
        with trust_registries([r.host for r in lab.registries], lab.ca.cert_pem.bytes()):
            for name in ENGINE_NAMES:
                problem = engine_problem(name)
                if problem is not None:
                    print(f"{name}: skipped ({problem})")
                    continue
                results = _engine(name, apps, lab.ca_file, rounds)
                for kind, (guara_times, bare_times) in results.items():
                    through, bare = statistics.median(guara_times), statistics.median(bare_times)
                    ratio = through / bare
                    goal = f"goal ≤ {GOAL}x" if kind == "cold" else "for information"
                    failures += kind == "cold" and ratio > GOAL
                    print(
                        f"{name}, {kind}: POST → first 200 median {through * 1000:.0f} ms through guara, "
                        f"{bare * 1000:.0f} ms bare Engine API: {ratio:.2f}x ({goal}; {rounds} rounds)"
                    )
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
