"""Benchmark: Test Connection (preflight) against the lab's token registry.

Compares, in one run and on one machine (only ratios mean anything):

- preflight, cold: trust store rebuilt (system roots + lab CA) on every call;
- preflight, warm: trust store cached (the normal case in a running server);
- raw lower bound: the same three requests (GET /v2/, GET token, HEAD manifest) with a bare
  httpx client, no guard, no caps, no parsing beyond the token JSON;
- the same preflight through an unguarded transport (RegistrySession with ``unsafe_transport``):
  what the network guard costs;
- ``skopeo inspect --raw`` (a peer: Go, one process per call, same auth dance and a manifest GET).

Every variant opens fresh connections each iteration, like a real Test Connection.

Run: ``python -m bench.preflight [--iterations 40]`` from the repository root.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
from pydantic import SecretStr
from tests.lab import ALICE_PASSWORD, Lab, start_lab

from guara.netguard import GuardPolicy, parse_allow_list
from guara.registry import (
    MANIFEST_MEDIA_TYPES,
    Credentials,
    Deadline,
    RegistrySession,
    parse_image_reference,
    preflight,
    trust_context,
)
from guara.registry import trust as trust_module

ALLOW = ("127.0.0.0/8",)
USER = "alice"
SKOPEO = "skopeo inspect --raw (peer)"


async def measure(
    calls: dict[str, Callable[[], Awaitable[object]]], iterations: int, *, every: dict[str, int]
) -> dict[str, list[float]]:
    """Round-robin over the variants (so load from elsewhere hits them alike); ``every[label] = n``
    runs that variant only every n-th round. One untimed warm-up call each."""
    for call in calls.values():
        await call()
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for round_number in range(iterations):
        for label, call in calls.items():
            if round_number % every.get(label, 1):
                continue
            started = time.perf_counter()
            await call()
            samples[label].append((time.perf_counter() - started) * 1000)
    return samples


def bench_calls(lab: Lab) -> dict[str, Callable[[], Awaitable[object]]]:
    image = lab.token.ref("acme/api:v1")
    ref = parse_image_reference(image)
    digest = lab.token.images["acme/api:v1"]

    async def preflight_warm() -> object:
        result = await preflight(
            image, username=USER, password=ALICE_PASSWORD, ca_file=lab.ca_file, ssrf_allow=ALLOW
        )
        assert result.ok, result
        assert result.digest == digest
        return result

    async def preflight_cold() -> object:
        trust_module._cached_context.cache_clear()
        return await preflight_warm()

    raw_context = ssl.create_default_context()
    raw_context.load_verify_locations(cafile=str(lab.ca_file))

    async def raw_lower_bound() -> object:
        async with httpx.AsyncClient(verify=raw_context, trust_env=False) as client:
            ping = await client.get(f"{lab.token.url}/v2/")
            assert ping.status_code == 401
            token = await client.get(
                lab.issuer.realm,
                params={"service": lab.token.service, "scope": "repository:acme/api:pull", "account": USER},
                auth=(USER, ALICE_PASSWORD),
            )
            head = await client.head(
                f"{lab.token.url}/v2/acme/api/manifests/v1",
                headers={
                    "Authorization": f"Bearer {token.json()['token']}",
                    "Accept": ", ".join(MANIFEST_MEDIA_TYPES),
                },
            )
            assert head.headers["Docker-Content-Digest"] == digest
            return head

    async def unguarded_preflight() -> object:
        context = trust_context(lab.ca_file)
        async with RegistrySession(
            ref,
            credentials=Credentials(USER, SecretStr(ALICE_PASSWORD)),
            ssl_context=context,
            policy=GuardPolicy(allow=parse_allow_list(ALLOW)),
            deadline=Deadline(8.0),
            unsafe_transport=httpx.AsyncHTTPTransport(verify=context, trust_env=False),
        ) as session:
            descriptor = await session.head_manifest()
        assert descriptor.digest == digest
        return descriptor

    return {
        "preflight (cold trust store)": preflight_cold,
        "preflight (warm)": preflight_warm,
        "same preflight, unguarded transport": unguarded_preflight,
        "raw httpx, same 3 requests": raw_lower_bound,
    }


def skopeo_cert_dir(lab: Lab, workdir: Path) -> Path:
    """A ``--cert-dir`` for skopeo trusting the lab CA (it reads the ``*.crt`` files of a directory)."""
    cert_dir = workdir / "certs"
    cert_dir.mkdir()
    shutil.copy(lab.ca_file, cert_dir / "ca.crt")
    return cert_dir


def skopeo_command(lab: Lab, cert_dir: Path) -> list[str]:
    """``skopeo inspect --raw`` of the token registry's image as alice: the peer's preflight."""
    binary = shutil.which("skopeo")
    if binary is None:
        raise FileNotFoundError("skopeo")
    return [
        binary,
        "inspect",
        "--raw",
        "--cert-dir",
        str(cert_dir),
        "--creds",
        f"{USER}:{ALICE_PASSWORD}",
        f"docker://{lab.token.ref('acme/api:v1')}",
    ]


def skopeo_call(lab: Lab, cert_dir: Path) -> Callable[[], Awaitable[object]]:
    command = skopeo_command(lab, cert_dir)

    async def call() -> object:
        completed = await anyio.run_process(command, check=False)
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr.decode(errors="replace")[-500:])
        return completed

    return call


async def main(iterations: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="guara-bench-") as workdir,
        start_lab(Path(workdir) / "lab") as lab,
    ):
        calls = bench_calls(lab)
        try:
            calls[SKOPEO] = skopeo_call(lab, skopeo_cert_dir(lab, Path(workdir)))
        except FileNotFoundError:
            print("skopeo not installed: peer skipped")
        results = await measure(calls, iterations, every={SKOPEO: 4})
    report(results, iterations)


def report(results: dict[str, list[float]], iterations: int) -> None:
    lower = statistics.median(results["raw httpx, same 3 requests"])
    warm = statistics.median(results["preflight (warm)"])
    print(f"\npreflight vs the lab token registry (TLS, loopback), {iterations} iterations")
    print(f"{'variant':40} {'median ms':>10} {'p90 ms':>8} {'vs raw':>8} {'vs warm':>8}")
    for label, samples in results.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) >= 2 else median
        print(f"{label:40} {median:10.1f} {p90:8.1f} {median / lower:7.2f}x {median / warm:7.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=40)
    arguments = parser.parse_args()
    anyio.run(main, arguments.iterations)
