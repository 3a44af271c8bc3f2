"""Benchmark: what the engine lab costs (tests/lab/engines.py, tests/lab/apps.py).

Measures, in one run on one machine:

- building the busybox images and pushing them to the lab's Basic and token registries;
- starting each engine (until `GET /_ping` answers) and stopping it (containers removed, lease given back);
- pull + create + start + first 200 from the published port, cold (a fresh engine, nothing cached)
  and warm (the image already pulled: a new container of it);
- the credential scan of the engine's files (`grep_engine_state`).

Run: ``python -m bench.engine_lab [--rounds 3]`` from the repository root, as root.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import docker
import httpx
from tests.lab.apps import APP_V1, AppImages, push_app_images
from tests.lab.engines import (
    ENGINE_NAMES,
    EngineHandle,
    credential_needles,
    engine_problem,
    scan_engine_state,
    start_engine,
)
from tests.lab.lab import start_lab
from tests.lab.trust import trust_registries


def _first_200(port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"no 200 from 127.0.0.1:{port}")


def _deploy(client: docker.DockerClient, apps: AppImages) -> tuple[float, dict[str, float]]:
    source = apps.token
    ref = source.ref(APP_V1)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    client.images.pull(ref, auth_config=source.auth_config())
    phases["pull"] = time.perf_counter() - started
    mark = time.perf_counter()
    container = client.containers.create(ref, ports={"8080/tcp": ("127.0.0.1", None)})
    phases["create"] = time.perf_counter() - mark
    mark = time.perf_counter()
    container.start()
    container.reload()
    phases["start"] = time.perf_counter() - mark
    port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    mark = time.perf_counter()
    _first_200(port)
    phases["first 200"] = time.perf_counter() - mark
    total = time.perf_counter() - started
    container.remove(force=True)
    return total, phases


def _engine_round(name: str, apps: AppImages) -> dict[str, object]:
    result: dict[str, object] = {}
    started = time.perf_counter()
    with start_engine(name) as handle:  # type: ignore[arg-type]
        result["start"] = time.perf_counter() - started
        client = handle.client()
        result["cold"], result["cold phases"] = _deploy(client, apps)
        result["warm"], result["warm phases"] = _deploy(client, apps)
        client.close()
        result["scan"] = _scan(handle, apps)
        stopping = time.perf_counter()
    result["stop"] = time.perf_counter() - stopping
    return result


def _scan(handle: EngineHandle, apps: AppImages) -> str:
    started = time.perf_counter()
    scan = scan_engine_state(handle, credential_needles(apps.token.username, apps.token.password))
    elapsed = time.perf_counter() - started
    return f"{elapsed * 1000:.0f} ms for {scan.files} files, {scan.bytes / 1e6:.1f} MB, {len(scan.matches)} matches"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guara-bench-") as temp, start_lab(Path(temp)) as lab:
        started = time.perf_counter()
        apps = push_app_images(lab)
        print(f"build + push app images (2 registries): {(time.perf_counter() - started) * 1000:.0f} ms")
        with trust_registries([r.host for r in lab.registries], lab.ca.cert_pem.bytes()):
            for name in ENGINE_NAMES:
                problem = engine_problem(name)
                if problem:
                    print(f"{name}: skipped ({problem})")
                    continue
                rounds = [_engine_round(name, apps) for _ in range(args.rounds)]
                print(f"\n{name} ({args.rounds} rounds, median):")
                for key in ("start", "cold", "warm", "stop"):
                    values = [float(r[key]) for r in rounds]  # type: ignore[arg-type]
                    print(
                        f"  {key:>5}: {statistics.median(values) * 1000:6.0f} ms  (min {min(values) * 1000:.0f})"
                    )
                for key in ("cold phases", "warm phases"):
                    phases = rounds[-1][key]
                    assert isinstance(phases, dict)
                    print(f"  {key}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in phases.items()))
                print(f"  scan: {rounds[-1]['scan']}")


if __name__ == "__main__":
    main()
