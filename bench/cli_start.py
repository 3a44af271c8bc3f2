"""Benchmark: ``guara preflight`` as a cold process against ``skopeo inspect --raw`` (the peer).

Both run as fresh processes against the lab's token registry (TLS with the lab CA, Basic login
exchanged for a bearer token, then the manifest), alternately in one run, so load from elsewhere
hits them alike. Reports the wall time (p50, p90) of each, the ratio
of the p50s, ``python -c pass``, and a process making the same three requests with bare httpx: the
floor of any Python registry client built on httpx.

Goal: ``guara preflight`` cold p50 <= 0.25 s.

Run: ``python -m bench.cli_start [--iterations 20]`` from the repository root (needs
/usr/bin/docker-registry and skopeo; everything stays on loopback).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.preflight import skopeo_cert_dir, skopeo_command
from tests.lab import ALICE_PASSWORD, start_lab

GOAL_S = 0.25
FLOOR = "bare httpx, same requests"
# The lower bound for a Python registry client on httpx: the same three requests (ping, token, HEAD
# manifest) with the system trust store and the lab CA, and nothing else (no guard, no settings, no CLI
# framework, no error mapping).
BARE_PREFLIGHT = """
import ssl, sys, httpx
registry, realm, service = sys.argv[1:4]
password = sys.stdin.readline().rstrip("\\n")
context = ssl.create_default_context()
context.load_verify_locations(sys.argv[4])
with httpx.Client(verify=context, trust_env=False) as client:
    assert client.get(registry + "/v2/").status_code == 401
    scope = {"service": service, "scope": "repository:acme/api:pull", "account": "alice"}
    token = client.get(realm, params=scope, auth=("alice", password)).json()["token"]
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    head = client.head(registry + "/v2/acme/api/manifests/v1", headers={"Authorization": "Bearer " + token, "Accept": accept})
    assert head.status_code == 200, head
"""


def main(iterations: int) -> None:
    guara = shutil.which("guara")
    if guara is None or shutil.which("skopeo") is None:
        sys.exit("needs skopeo and the guara command on PATH")
    with (
        tempfile.TemporaryDirectory(prefix="guara-bench-") as workdir,
        start_lab(Path(workdir) / "lab") as lab,
    ):
        image = lab.token.ref("acme/api:v1")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("GUARA_", "PYTHON"))}
        env["GUARA_SSRF_ALLOW"] = "127.0.0.0/8"
        commands: dict[str, tuple[list[str], str]] = {
            "guara preflight": (
                [
                    guara,
                    "preflight",
                    image,
                    "--username",
                    "alice",
                    "--password-stdin",
                    "--ca-file",
                    str(lab.ca_file),
                ],
                ALICE_PASSWORD + "\n",
            ),
            "skopeo inspect --raw (peer)": (skopeo_command(lab, skopeo_cert_dir(lab, Path(workdir))), ""),
            "python -c pass": ([sys.executable, "-c", "pass"], ""),
            FLOOR: (
                [
                    sys.executable,
                    "-c",
                    BARE_PREFLIGHT,
                    lab.token.url,
                    lab.issuer.realm,
                    lab.issuer.service,
                    str(lab.ca_file),
                ],
                ALICE_PASSWORD + "\n",
            ),
        }
        for command, stdin in commands.values():  # warm the page cache once
            run_one(command, stdin, env)
        walls: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(iterations):
            for label, (command, stdin) in commands.items():
                walls[label].append(run_one(command, stdin, env))
    print(f"cold processes against the lab token registry, {iterations} rounds alternating")
    print(f"{'command':30} {'p50 s':>7} {'p90 s':>7}")
    for label, samples in walls.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) >= 2 else samples[0]
        print(f"{label:30} {statistics.median(samples):7.3f} {p90:7.3f}")
    guara_p50 = statistics.median(walls["guara preflight"])
    print(f"guara preflight / bare httpx: {guara_p50 / statistics.median(walls[FLOOR]):.1f}x")
    print(
        f"guara preflight / skopeo: {guara_p50 / statistics.median(walls['skopeo inspect --raw (peer)']):.1f}x; "
        f"p50 {guara_p50:.3f} s (goal <= {GOAL_S} s: {'met' if guara_p50 <= GOAL_S else 'not met'})"
    )


def run_one(command: list[str], stdin: str, env: dict[str, str]) -> float:
    """Seconds from spawning one process to its exit (which must be 0)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(stdin.encode())
    process.stdin.close()
    output = process.stdout.read()
    code = process.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{command[:3]} exited {code}: {output.decode()[-500:]}")
    return wall


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20)
    main(parser.parse_args().iterations)
