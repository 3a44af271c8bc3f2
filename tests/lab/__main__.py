"""`python -m tests.lab [--json] [--workdir DIR] [--check] [--reuse-tokens]`: run the lab in the foreground.

Prints the CA file, each registry's URL, users and image digests, and the token realm; then waits for
Ctrl-C (or exits at once with --check). Passwords are printed: they are the lab's public test values.
With --reuse-tokens the issuer signs each grant once (benchmarks: see TokenIssuer.reuse_tokens).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.lab.lab import Lab, start_lab
from tests.lab.registry import REGISTRY_BINARY


def describe(lab: Lab) -> dict[str, object]:
    return {
        "ca_file": str(lab.ca_file),
        "workdir": str(lab.workdir),
        "issuer": {
            "realm": lab.issuer.realm,
            "service": lab.issuer.service,
            "issuer": lab.issuer.issuer_name,
        },
        "registries": {
            registry.name: {
                "host": registry.host,
                "url": registry.url,
                "auth": registry.auth,
                "users": registry.users,
                "images": registry.images,
                "platforms": registry.platforms,
            }
            for registry in lab.registries
        },
    }


def _print_text(info: dict[str, object]) -> None:
    print(f"CA file:  {info['ca_file']}")
    print(f"workdir:  {info['workdir']}")
    issuer = info["issuer"]
    assert isinstance(issuer, dict)
    print(f"issuer:   realm={issuer['realm']} service={issuer['service']} iss={issuer['issuer']}")
    registries = info["registries"]
    assert isinstance(registries, dict)
    for name, registry in registries.items():
        print(f"\n[{name}] {registry['url']}  (auth: {registry['auth']})")
        for user, password in registry["users"].items():
            print(f"  user {user!r} password {password!r}")
        for repo_tag, digest in registry["images"].items():
            print(f"  {registry['host']}/{repo_tag}  {digest}")
            for platform, child in registry["platforms"].get(repo_tag, {}).items():
                print(f"      {platform}: {child}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workdir", type=Path, help="keep the lab's files here (default: a temp dir)")
    parser.add_argument("--check", action="store_true", help="start, print, stop")
    parser.add_argument("--reuse-tokens", action="store_true", help="sign each grant once")
    args = parser.parse_args(argv)
    if not REGISTRY_BINARY.exists():
        print(f"{REGISTRY_BINARY} is missing (apt-get install docker-registry)", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="guara-lab-") as temp:
        workdir = args.workdir if args.workdir is not None else Path(temp)
        with start_lab(workdir) as lab:
            lab.issuer.reuse_tokens = args.reuse_tokens
            info = describe(lab)
            if args.json:
                print(json.dumps(info, indent=2, ensure_ascii=False))
            else:
                _print_text(info)
            sys.stdout.flush()
            if not args.check:
                if not args.json:
                    print("\nrunning; Ctrl-C to stop", file=sys.stderr)
                with contextlib.suppress(KeyboardInterrupt):
                    stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
