"""Errors raised by the network guard.

Error tree (catch the root to handle every refusal)::

    NetGuardError                 root of every guard error
     ├── DisallowedURL            the URL itself is refused: scheme other than http/https,
     │                            credentials (userinfo) in the URL, no host, or a port
     │                            outside 1-65535
     ├── DestinationBlocked       the host is, or resolves to, an address the guard refuses
     │                            (.host, .address, .reason)
     └── ResolutionFailed         the host name did not resolve (DNS failure or no answers)

These errors are raised from inside the httpx transport and travel through httpx unchanged:
``await client.get(url)`` raises them as they are. Messages name hosts and addresses only, never a
full URL, so credentials cannot leak through them.
"""

from __future__ import annotations


class NetGuardError(Exception):
    """Root of every error the network guard raises."""


class DisallowedURL(NetGuardError):
    """The URL is refused before any resolution or connection."""


class DestinationBlocked(NetGuardError):
    """The destination is not publicly routable (or is a cloud metadata name)."""

    def __init__(
        self, host: str, address: str | None, reason: str, *, description: str | None = None
    ) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        what = description or reason
        if address is None:
            message = f"{host} is refused: {what}"
        elif address == host:
            message = f"{host} is {what}"
        else:
            message = f"{host} resolves to {address}, {what}"
        super().__init__(message)


class ResolutionFailed(NetGuardError):
    """The host name could not be resolved, or resolved to nothing."""

    def __init__(self, host: str, detail: str) -> None:
        self.host = host
        self.detail = detail
        super().__init__(f"could not resolve {host}: {detail}")
