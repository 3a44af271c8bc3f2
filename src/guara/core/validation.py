"""Input rules shared by the API, the dashboard and the CLI."""

from __future__ import annotations

import re

from guara.core.errors import InvalidInput
from guara.deploy import InvalidPlatform, parse_platform
from guara.registry import ImageReference, InvalidReference, parse_image_reference

# A Kubernetes object name (RFC 1123 label): services become Deployments.
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Control characters (C0, DEL, C1) nowhere; one character other than a space somewhere.
PROJECT_NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
PROJECT_NAME = re.compile(PROJECT_NAME_PATTERN)
MAX_PROJECT_NAME = 100
MAX_SERVICE_NAME = 63
# What email() accepts after trimming; the API schemas state it.
_EMAIL_CHAR = r"[^@\s\x00-\x1f\x7f-\x9f\ufeff]"
EMAIL_PATTERN = rf"^{_EMAIL_CHAR}{{1,64}}@{_EMAIL_CHAR}{{1,189}}$"
EMAIL = re.compile(EMAIL_PATTERN.strip("^$"))
MAX_PASSWORD = 1024
# A registry password or token: generous for a GCR JSON key (several KB), small enough to refuse abuse.
MAX_REGISTRY_SECRET = 16 * 1024
MAX_IMAGE = 512


def project_name(value: str) -> str:
    """1 to 100 characters, no control characters, not only spaces; stored without outer spaces.
    (The API's schema states the same rule, ``PROJECT_NAME_PATTERN``.)"""
    if len(value) > MAX_PROJECT_NAME or not PROJECT_NAME.fullmatch(value):
        raise InvalidInput(
            "project name must be 1 to 100 characters without control characters, not only spaces",
            field="name",
        )
    return value.strip(" ")


def token_name(value: str) -> str:
    """An API token's name: the rule of project names (``PROJECT_NAME_PATTERN``)."""
    if len(value) > MAX_PROJECT_NAME or not PROJECT_NAME.fullmatch(value):
        raise InvalidInput(
            "token name must be 1 to 100 characters without control characters, not only spaces",
            field="name",
        )
    return value.strip(" ")


def service_name(value: str) -> str:
    if not SERVICE_NAME.fullmatch(value):  # fullmatch: "$" would also accept a trailing newline
        raise InvalidInput(
            "service name must be 1 to 63 lower-case letters, digits or '-', "
            "starting with a letter and not ending with '-'",
            code="invalid_name",
            field="name",
        )
    return value


def image_reference(value: str) -> ImageReference:
    """An image reference, exactly as given (adapters trim what people typed)."""
    text = value
    if len(text) > MAX_IMAGE:
        raise InvalidInput(f"image reference is longer than {MAX_IMAGE} characters", code="invalid_image")
    try:
        return parse_image_reference(text)
    except InvalidReference as exc:
        raise InvalidInput(f"invalid image reference: {exc}", code="invalid_image", field="image") from None


def platform(value: str) -> str:
    """A deploy platform (``os/arch[/variant]``), canonical: ``linux/aarch64`` becomes ``linux/arm64``."""
    try:
        return str(parse_platform(value))
    except InvalidPlatform as exc:
        raise InvalidInput(str(exc), code="invalid_platform", field="platform") from None


# A path a readiness probe may GET: printable ASCII, no spaces.
HEALTH_PATH_PATTERN = r"^/[\x21-\x7e]{0,254}$"
HEALTH_PATH = re.compile(HEALTH_PATH_PATTERN)
DEFAULT_PORT = 8080


def port(value: int) -> int:
    """The container port a service listens on."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput("port must be a number from 1 to 65535", code="invalid_port", field="port")
    return value


def health_path(value: str | None) -> str | None:
    """An HTTP path that answers below 400 once the service is ready; None: the port accepting
    connections is enough."""
    if value is None:
        return None
    if not HEALTH_PATH.fullmatch(value):
        raise InvalidInput(
            "the health path must start with '/' and be at most 255 printable characters without spaces",
            code="invalid_health_path",
            field="health_path",
        )
    return value


def email(value: str) -> str:
    address = value.strip().lower()
    if len(address) > 254 or not EMAIL.fullmatch(address):
        raise InvalidInput("a valid email address is required", field="email")
    return address


def password(value: str) -> str:
    if not 8 <= len(value) <= MAX_PASSWORD:
        raise InvalidInput(f"password must be 8 to {MAX_PASSWORD} characters", field="password")
    return value
