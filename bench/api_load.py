"""Load on the Test Connection API, against the token lab registry, with a raw lower bound in one run.

1. 100 concurrent Test Connections from 20 users (5 each: the per-user limit) through a real
   `guara serve`, against the same 100 preflights made directly with bare httpx (GET /v2/, token,
   HEAD manifest; one shared SSL context, a fresh client per preflight), concurrently; the two
   alternate, several rounds, in one run. The lab runs in a process of its own and its token issuer
   reuses its signed tokens, so neither side waits on RSA signing or shares a process with the
   issuer: both are bound by TLS and the registry, and guara's own cost shows. The API requests go
   out over kept-alive connections as prebuilt bytes (see KeptAliveConnection), so the load
   generator's own cost is not counted as guara's. Reports p50/p95, the ratio of p50s (goal:
   <= 1.25) and the CPU time per Test Connection of the server against the bare client's (goal:
   <= 1.2x).
2. 50 concurrent Test Connections against a registry that never answers (a TCP listener that accepts
   and stays silent): every one must end as `timeout` between 8.0 and 8.5 s, while /healthz is polled
   and its p99 stays under 100 ms.

Run: python bench/api_load.py   (needs /usr/bin/docker-registry; everything stays on loopback)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import build_context
from tests.support import run

from guara.core import accounts

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A loopback listener that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@dataclass(frozen=True)
class TokenLab:
    """The lab's token registry and issuer, as ``python -m tests.lab --json`` describes them."""

    url: str
    host: str
    realm: str
    service: str
    password: str
    ca_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@contextlib.contextmanager
def lab_process(workdir: Path) -> Iterator[TokenLab]:
    """``python -m tests.lab --json --reuse-tokens`` in a process of its own, until the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.lab", "--json", "--reuse-tokens", "--workdir", str(workdir)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:  # the description is one JSON object, its closing brace alone
            lines.append(line)
            if line == "}\n":
                break
        info = json.loads("".join(lines))
        token = info["registries"]["token"]
        yield TokenLab(
            url=token["url"],
            host=token["host"],
            realm=info["issuer"]["realm"],
            service=info["issuer"]["service"],
            password=token["users"]["alice"],
            ca_file=Path(info["ca_file"]),
        )
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextlib.contextmanager
def guara_server(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "guara.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(log.read_text())
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


async def raw_preflight(lab: TokenLab, user: str, password: str, ssl_context: ssl.SSLContext) -> float:
    """The three requests of a preflight with bare httpx: the lower bound guara is compared with."""
    started = time.perf_counter()
    async with httpx.AsyncClient(verify=ssl_context, trust_env=False) as client:
        ping = await client.get(f"{lab.url}/v2/")
        assert ping.status_code == 401
        token = await client.get(
            lab.realm,
            params={"service": lab.service, "scope": "repository:acme/api:pull", "account": user},
            auth=(user, password),
        )
        bearer = token.json()["token"]
        head = await client.head(
            f"{lab.url}/v2/acme/api/manifests/v1",
            headers={"Authorization": f"Bearer {bearer}", "Accept": MANIFEST_ACCEPT},
        )
        assert head.status_code == 200
    return (time.perf_counter() - started) * 1000


async def api_test(
    client: httpx.AsyncClient, token: str, body: dict[str, str]
) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/registry/test", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed, response.json()


class KeptAliveConnection:
    """The API side's load generator: one kept-alive HTTP/1.1 connection, a request written as bytes,
    only the status line, Content-Length and body read back. httpx costs a few ms of CPU per request
    on this machine, and 100 concurrent requests from one client queue behind that cost, which would
    count as guara's latency."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> KeptAliveConnection:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, f"{host}:{port}")

    async def post_json(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def lean_api_test(
    connection: KeptAliveConnection, token: str, body: bytes
) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    status, answer = await connection.post_json("/api/v1/registry/test", body, token)
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 200, answer
    return elapsed, json.loads(answer)


ROUNDS = 5
USERS_PER_ROUND = 20


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, lab_process(Path(tmp) / "lab") as lab:
        data = Path(tmp) / "data"
        env = {
            "GUARA_DATA_DIR": str(data),
            "GUARA_DATABASE_URL": f"sqlite:///{data / 'guara.db'}",
            "GUARA_MASTER_KEY_FILE": str(data / "master.key"),
            "GUARA_SSRF_ALLOW": "127.0.0.0/8",
            "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
            "GUARA_RUNTIME": "render",
        }
        from guara.secrets import ensure_key_file

        ensure_key_file(data / "master.key")
        context = build_context(env)
        tokens = []
        for i in range(USERS_PER_ROUND * (ROUNDS + 1) + 11):
            email = f"load{i}@example.com"
            run(accounts.create_user, context, email=email, password="load-password")
            tokens.append(run(accounts.create_api_token, context, email=email))
        context.close()
        password = lab.password
        shared_ssl = lab.ssl_context()
        server_env = {**{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}, **env}
        with guara_server(server_env, Path(tmp) / "server.log") as (url, server_pid):
            server = psutil.Process(server_pid)
            me = psutil.Process()
            # Warm both paths once (imports, TLS contexts, first DB connections).
            await raw_preflight(lab, "alice", password, shared_ssl)
            body = {"image": f"{lab.host}/acme/api:v1", "username": "alice", "password": password}
            connections = [await KeptAliveConnection.open(url) for _ in range(100)]
            encoded = json.dumps(body).encode()
            try:
                await lean_api_test(connections[0], tokens[-1], encoded)
                raw: list[float] = []
                api_ms: list[float] = []
                raw_cpu = api_cpu = 0.0
                for round_ in range(ROUNDS):
                    before = sum(me.cpu_times()[:2])
                    raw += await asyncio.gather(
                        *(raw_preflight(lab, "alice", password, shared_ssl) for _ in range(100))
                    )
                    raw_cpu += sum(me.cpu_times()[:2]) - before
                    users = tokens[round_ * USERS_PER_ROUND : (round_ + 1) * USERS_PER_ROUND]
                    before = sum(server.cpu_times()[:2])
                    results = await asyncio.gather(
                        *(
                            lean_api_test(connections[i], users[i % USERS_PER_ROUND], encoded)
                            for i in range(100)
                        )
                    )
                    api_cpu += sum(server.cpu_times()[:2]) - before
                    assert all(r["ok"] for _, r in results), [r for _, r in results if not r["ok"]][:1]
                    api_ms += [ms for ms, _ in results]
                ratio = statistics.median(api_ms) / statistics.median(raw)
                per_raw, per_api = raw_cpu / len(raw) * 1000, api_cpu / len(api_ms) * 1000
                print(
                    f"100 concurrent Test Connections, 20 users, token lab registry, {ROUNDS} rounds alternating"
                )
                print(
                    f"  raw httpx lower bound: p50 {statistics.median(raw):7.1f} ms  p95 {percentile(raw, 0.95):7.1f} ms"
                )
                print(
                    f"  guara API:             p50 {statistics.median(api_ms):7.1f} ms  p95 {percentile(api_ms, 0.95):7.1f} ms"
                )
                print(f"  ratio of p50s: {ratio:.2f} (goal <= 1.25)")
                print(
                    f"  CPU per Test Connection: server {per_api:.1f} ms, bare client {per_raw:.1f} ms: "
                    f"{per_api / per_raw:.2f}x (goal <= 1.2x)"
                )

                with blackhole() as port:
                    hole = {"image": f"127.0.0.1:{port}/acme/api:v1"}
                    health: list[float] = []
                    done = asyncio.Event()

                    async def poll_health() -> None:
                        async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
                            while not done.is_set():
                                started = time.perf_counter()
                                assert (await probe.get("/healthz")).status_code == 200
                                health.append((time.perf_counter() - started) * 1000)
                                await asyncio.sleep(0.05)

                    poller = asyncio.create_task(poll_health())
                    # httpx here: this part measures timeouts, not the client's cost.
                    async with httpx.AsyncClient(
                        base_url=url, timeout=30, limits=httpx.Limits(max_connections=100)
                    ) as fresh:
                        spare = tokens[USERS_PER_ROUND * ROUNDS :]
                        hung = await asyncio.gather(
                            *(api_test(fresh, spare[i % 10], hole) for i in range(50))
                        )
                    done.set()
                    await poller
                codes = {r["code"] for _, r in hung}
                walls = [ms for ms, _ in hung]
                reported = [int(r["elapsed_ms"]) for _, r in hung]  # type: ignore[call-overload]
                print("50 concurrent Test Connections against a registry that never answers")
                print(
                    f"  codes: {sorted(str(code) for code in codes)}; preflight elapsed {min(reported)}..{max(reported)} ms; "
                    f"request wall {min(walls):.0f}..{max(walls):.0f} ms (bound 8000..8500)"
                )
                print(
                    f"  /healthz during it: {len(health)} probes, p50 {statistics.median(health):.1f} ms, "
                    f"p99 {percentile(health, 0.99):.1f} ms (goal < 100)"
                )
            finally:
                for connection in connections:
                    connection.close()


if __name__ == "__main__":
    asyncio.run(main())
