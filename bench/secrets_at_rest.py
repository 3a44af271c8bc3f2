"""Benchmark of guara.secrets: sealing overhead over raw AES-GCM, HKDF cost, and key caching.

Run: python bench/secrets_at_rest.py [--rounds N]

Prints medians measured in this run and their ratios; it asserts no timing. It does check (and exits 1
otherwise) that one ProjectKeys derives one key per project for a page of 1,000 services across 10
projects, and one per (project, version) for a rotation batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named secrets.py and Python puts its directory first on the import path, where it would
# shadow the standard library's `secrets` (imported by our dependencies). Drop that entry first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from guara.secrets import MasterKeyring, ProjectKeys, open_secret, redact_text, reseal, seal  # noqa: E402
from guara.secrets.derivation import derive_project_key  # noqa: E402

PASSWORD = SecretStr("ghp_" + "x" * 36)  # the size of a GitHub personal access token
PLACE = {"project_id": "3f2b7c1e-0d4a-4e8b-9c61-2a5d7e9f1b30", "service_id": "9b1d", "field": "password"}


def median_ns_per_op(action: Callable[[], object], *, ops: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean time of one call, in nanoseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(ops):
            action()
        samples.append((time.perf_counter_ns() - start) / ops)
    return statistics.median(samples)


def median_ns(action: Callable[[], object], *, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        action()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


def show(label: str, nanoseconds: float, baseline: float | None = None) -> None:
    ratio = f"   x{nanoseconds / baseline:6.2f}" if baseline else ""
    print(f"  {label:<52} {nanoseconds / 1000:10.2f} us{ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    keyring = MasterKeyring({1: os.urandom(32), 2: os.urandom(32)})
    keys = ProjectKeys(keyring)
    envelope = seal(keys, PASSWORD, **PLACE)

    raw = AESGCM(os.urandom(32))
    data = PASSWORD.get_secret_value().encode()
    associated = b"gs1\x00\x00\x00\x01" + b"x" * 60  # the same size as guara's associated data
    sealed_raw = raw.encrypt(nonce := os.urandom(12), data, associated)

    print(f"per operation, warm keys (median of {rounds} rounds x 2,000 ops)")
    raw_encrypt = median_ns_per_op(
        lambda: raw.encrypt(os.urandom(12), data, associated), ops=2000, rounds=rounds
    )
    raw_decrypt = median_ns_per_op(
        lambda: raw.decrypt(nonce, sealed_raw, associated), ops=2000, rounds=rounds
    )
    guara_seal = median_ns_per_op(lambda: seal(keys, PASSWORD, **PLACE), ops=2000, rounds=rounds)
    guara_open = median_ns_per_op(lambda: open_secret(keys, envelope, **PLACE), ops=2000, rounds=rounds)
    show("raw AESGCM encrypt (fresh nonce)", raw_encrypt)
    show("guara seal  (vs raw encrypt)", guara_seal, raw_encrypt)
    show("raw AESGCM decrypt", raw_decrypt)
    show("guara open_secret  (vs raw decrypt)", guara_open, raw_decrypt)
    show("guara seal + open  (vs raw encrypt + decrypt)", guara_seal + guara_open, raw_encrypt + raw_decrypt)

    print(f"\nkey derivation (median of {rounds} rounds x 500 ops)")
    master = keyring.master_key(1)
    hkdf = median_ns_per_op(
        lambda: derive_project_key(master, project_id="p", version=1), ops=500, rounds=rounds
    )
    cold = median_ns_per_op(lambda: ProjectKeys(keyring).aead("p", 1), ops=500, rounds=rounds)
    warm = median_ns_per_op(lambda: keys.aead(PLACE["project_id"], 1), ops=500, rounds=rounds)
    show("HKDF-SHA256 derive_project_key", hkdf)
    show("ProjectKeys.aead, cold (derive + AESGCM)  (vs HKDF)", cold, hkdf)
    show("ProjectKeys.aead, warm (cached)  (vs HKDF)", warm, hkdf)
    show("guara seal + open, warm  (vs HKDF)", guara_seal + guara_open, hkdf)

    services = [
        {"project_id": f"project-{n % 10}", "service_id": f"service-{n}", "field": "password"}
        for n in range(1000)
    ]
    stored = [seal(keys, SecretStr(f"pw-{n}"), **place, version=1) for n, place in enumerate(services)]
    failures = 0

    def read_page_shared() -> None:
        page_keys = ProjectKeys(keyring)
        for envelope_, place in zip(stored, services, strict=True):
            open_secret(page_keys, envelope_, **place)

    def read_page_unshared() -> None:
        for envelope_, place in zip(stored, services, strict=True):
            open_secret(ProjectKeys(keyring), envelope_, **place)

    page_rounds = max(3, rounds // 3)
    print(f"\na page of 1,000 services across 10 projects (median of {page_rounds} rounds)")
    page_keys = ProjectKeys(keyring)
    for envelope_, place in zip(stored, services, strict=True):
        open_secret(page_keys, envelope_, **place)
    print(f"  derivations with one ProjectKeys for the page: {page_keys.derivation_count} (expected 10)")
    failures += page_keys.derivation_count != 10
    shared = median_ns(read_page_shared, rounds=page_rounds)
    unshared = median_ns(read_page_unshared, rounds=page_rounds)
    show("open 1,000, one ProjectKeys per page", shared)
    show("open 1,000, one ProjectKeys per service  (vs shared)", unshared, shared)

    batch_keys = ProjectKeys(keyring)
    moved = [
        reseal(batch_keys, envelope_, **place, to_version=2)
        for envelope_, place in zip(stored, services, strict=True)
    ]
    print(f"\nrotation batch: resealed {len(moved)} envelopes v1 -> v2")
    print(f"  derivations with one ProjectKeys for the batch: {batch_keys.derivation_count} (expected 20)")
    failures += batch_keys.derivation_count != 20

    print(f"\nlog redaction of one ~120 KB line (median of {page_rounds} rounds; linear time expected)")
    ordinary = median_ns(lambda: redact_text("lorem ipsum dolor sit amet " * 4400), rounds=page_rounds)
    show("ordinary words", ordinary)
    hostile = {
        "dots and dashes (URL scheme characters)": "a.b-c+" * 20000,
        "JWT-like fragments": "eyJaaaa." * 15000,
        "unclosed quoted secret fields": ("'password': '" + "a" * 10) * 9000,
        "repeated Authorization headers": "Authorization: '" * 7500,
    }
    for label, line in hostile.items():
        show(
            f"{label}  (vs ordinary)",
            median_ns(lambda line=line: redact_text(line), rounds=page_rounds),
            ordinary,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
