"""How guara talks to registries, as one value: what TLS trusts, what the guard exempts, the one deadline.

Every registry operation (the preflight, deploy's image resolution) takes a ``RegistryOptions``; the
application builds one from its settings at start and hands the same object to each call.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from guara import PREFLIGHT_TIMEOUT_S
from guara.netguard import GuardPolicy, Resolver, parse_allow_list
from guara.netguard.addresses import IPNetwork

from .trust import trust_context

DEFAULT_TIMEOUT_S = PREFLIGHT_TIMEOUT_S


@dataclass(frozen=True)
class RegistryOptions:
    """``ca_file``: PEM roots trusted beside the system's. ``ssrf_allow``: networks the operator exempts
    from the guard (none by default). ``timeout``: seconds for a whole operation. ``allow_http``: accept
    plain-HTTP registries (refused by default). ``resolver``: None for the system resolver.
    ``aws_endpoint_url``: the ECR and STS endpoint for cloud keys (None: AWS's regional ones).
    ``on_secret``: told every short-lived secret a cloud key is exchanged for (to scrub it from logs)."""

    ca_file: str | os.PathLike[str] | None = None
    ssrf_allow: tuple[IPNetwork, ...] = ()
    timeout: float = DEFAULT_TIMEOUT_S
    allow_http: bool = False
    resolver: Resolver | None = None
    aws_endpoint_url: str | None = None
    on_secret: Callable[[SecretStr], None] = lambda _secret: None

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("the registry timeout must be a positive number of seconds")

    @classmethod
    def build(
        cls,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        ssrf_allow: str | Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
        allow_http: bool = False,
        resolver: Resolver | None = None,
        aws_endpoint_url: str | None = None,
        on_secret: Callable[[SecretStr], None] | None = None,
    ) -> RegistryOptions:
        """Options from settings-style values; a malformed ``ssrf_allow`` raises ValueError."""
        options = cls(ca_file, parse_allow_list(ssrf_allow), timeout, allow_http, resolver, aws_endpoint_url)
        return options if on_secret is None else dataclasses.replace(options, on_secret=on_secret)

    def ssl_context(self) -> ssl.SSLContext:
        """The trust store (cached per CA file version); raises TrustStoreError when unreadable."""
        return trust_context(self.ca_file)

    def guard_policy(self) -> GuardPolicy:
        return GuardPolicy(allow=self.ssrf_allow, resolver=self.resolver)
