"""Outbound network guard: refuse every destination that is not publicly routable.

Use ``guarded_transport(GuardPolicy(...), ssl_context=ctx)`` as the transport of an
``httpx.AsyncClient(trust_env=False)``; every new connection then resolves once, has every answer
classified, and dials a checked address while TLS still verifies the host name.
"""

from .addresses import is_public_address
from .errors import DestinationBlocked, DisallowedURL, NetGuardError, ResolutionFailed
from .policy import Decision, GuardPolicy, classify, parse_allow_list
from .resolver import Resolver, SystemResolver
from .transport import guarded_transport

__all__ = [
    "Decision",
    "DestinationBlocked",
    "DisallowedURL",
    "GuardPolicy",
    "NetGuardError",
    "ResolutionFailed",
    "Resolver",
    "SystemResolver",
    "classify",
    "guarded_transport",
    "is_public_address",
    "parse_allow_list",
]
