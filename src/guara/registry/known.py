"""What each well-known registry wants in the Username and Password fields, and the usual cause of its
failures: the one table behind the form hints, the failure advice (dashboard and ``guara preflight``)
and the README's *Supported registries* table.

Registries are told apart by host name only. A self-hosted GitLab or Harbor is recognised when its
host says so (``registry.gitlab.example.com``, ``harbor.example.com``); any other host gets the generic
hints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidReference, InvalidRegistry
from .reference import parse_image_reference, parse_registry, split_authority


@dataclass(frozen=True)
class RegistryNotes:
    """``host_pattern`` is a regular expression (also valid in JavaScript) over the lower-case host name
    without its port; ``advice`` maps a preflight code to the registry's usual cause of it."""

    key: str
    name: str
    example_host: str
    host_pattern: str
    username_help: str
    credential_help: str
    advice: Mapping[str, str] = field(default_factory=dict)

    def matches(self, hostname: str) -> bool:
        return re.fullmatch(self.host_pattern, hostname) is not None


KNOWN_REGISTRIES: tuple[RegistryNotes, ...] = (
    RegistryNotes(
        key="docker-hub",
        name="Docker Hub",
        example_host="docker.io",
        host_pattern=r"docker\.io|index\.docker\.io|registry-1\.docker\.io",
        username_help="Your Docker Hub username (not your email address).",
        credential_help="A personal access token with Read-only access (Account settings → Personal access "
        "tokens). With two-factor authentication on, only a token works.",
        advice={
            "auth_failed": "Docker Hub rejected the login. Use your Docker Hub username, not your email; "
            "with two-factor authentication on, the password must be a personal access token.",
            "manifest_not_found": "Docker Hub answers this way when the repository is private to another "
            "account or organization: check that this user can read it, and the repository name.",
        },
    ),
    RegistryNotes(
        key="ghcr",
        name="GitHub Container Registry",
        example_host="ghcr.io",
        host_pattern=r"ghcr\.io",
        username_help="Your GitHub username (the token's owner).",
        credential_help="A personal access token: classic with the read:packages scope, or fine-grained with "
        "read access to the package.",
        advice={
            "auth_failed": "GitHub rejected the token: it needs the read:packages scope (or package read "
            "access for a fine-grained token), must not be expired, and must belong to a user who can "
            "read the package.",
            "manifest_not_found": "On ghcr.io this also means the token's user cannot see the package: "
            "give that user (or the linked repository) read access in the package's settings.",
        },
    ),
    RegistryNotes(
        key="gitlab",
        name="GitLab Container Registry",
        example_host="registry.gitlab.com",
        host_pattern=r"registry\.gitlab\.[a-z0-9.-]+",
        username_help="Your GitLab username, or a deploy token's username (gitlab+deploy-token-N).",
        credential_help="A personal, project or group access token, or a deploy token, with the "
        "read_registry scope.",
        advice={
            "auth_failed": "GitLab rejected the login: the token needs the read_registry scope and must not "
            "be expired or revoked; a deploy token logs in with its own username "
            "(gitlab+deploy-token-N).",
        },
    ),
    RegistryNotes(
        key="google",
        name="Google Artifact Registry / Container Registry",
        example_host="gcr.io",
        host_pattern=r"(?:[a-z0-9-]+\.)?gcr\.io|[a-z0-9-]+-docker\.pkg\.dev",
        username_help="oauth2accesstoken with an access token, or _json_key (or _json_key_base64) with a "
        "service-account key.",
        credential_help="The access token (gcloud auth print-access-token; it lasts an hour), or the service "
        "account's JSON key (base64-encoded for _json_key_base64). The account needs read access: "
        "Artifact Registry Reader.",
        advice={
            "auth_failed": "Google rejected the login: access tokens expire after an hour (a "
            "service-account key lasts), and the username must match the password's form: "
            "oauth2accesstoken, _json_key or _json_key_base64.",
            "manifest_not_found": "Google answers this way when the service account cannot read the "
            "repository (it needs Artifact Registry Reader) or the project or repository path is wrong.",
        },
    ),
    RegistryNotes(
        key="quay",
        name="Quay.io",
        example_host="quay.io",
        host_pattern=r"quay\.io",
        username_help="Your Quay username, or a robot account (organization+name).",
        credential_help="An encrypted password (Account settings → Generate encrypted password), or "
        "the robot account's token.",
        advice={
            "auth_failed": "Quay rejected the login: a robot account's username is organization+name and "
            "its password is the robot token; accounts that sign in with GitHub or Google need an "
            "encrypted password.",
            "manifest_not_found": "Quay answers this way when the repository is private and this account "
            "or robot has no read permission on it.",
        },
    ),
    RegistryNotes(
        key="harbor",
        name="Harbor (self-hosted)",
        example_host="harbor.example.com",
        host_pattern=r"harbor\.[a-z0-9.-]+",
        username_help="A robot account (robot$project+name) or a Harbor user.",
        credential_help="The robot account's secret. Pull permission on the project is enough; robot "
        "accounts can expire.",
        advice={
            "auth_failed": "Harbor rejected the login: write the robot account's full name with its robot$ "
            "prefix, and check that it is not expired or disabled and can pull from the project.",
        },
    ),
    RegistryNotes(
        key="ecr",
        name="Amazon ECR",
        example_host="123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        host_pattern=r"[0-9]{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?",
        username_help="AWS",
        credential_help="The output of aws ecr get-login-password. It expires after 12 hours.",
        advice={
            "auth_failed": "ECR rejected the login: the username is AWS, and passwords from aws ecr "
            "get-login-password expire after 12 hours.",
        },
    ),
    RegistryNotes(
        key="acr",
        name="Azure Container Registry",
        example_host="myregistry.azurecr.io",
        host_pattern=r"[a-z0-9-]+\.azurecr\.io",
        username_help="A repository-scoped token's name, or a service principal's application (client) ID.",
        credential_help="The token's password, or the service principal's secret; the AcrPull role "
        "is enough.",
        advice={
            "auth_failed": "Azure rejected the login: a service principal needs the AcrPull role on the "
            "registry, and token passwords and client secrets expire.",
        },
    ),
)


def registry_hostname(registry: str) -> str | None:
    """The lower-case host name of a Registry URL (``https://GHCR.io:443/`` → ``ghcr.io``); None when the
    text is not a registry. (``guara.js`` does the same for the hints as the user types.)"""
    try:
        location = parse_registry(registry.strip(), allow_http=True)
    except InvalidRegistry:
        return None
    hostname, _port = split_authority(location.host)
    return hostname.lower().rstrip(".")


def registry_named(registry: str | None, image: str | None) -> str | None:
    """The registry a test is about as the user named it: the Registry URL, else the image's registry
    (None when neither can be told)."""
    if registry:
        return registry
    try:
        return parse_image_reference(image).registry if image else None
    except InvalidReference:
        return None


def notes_for(registry: str | None) -> RegistryNotes | None:
    """The notes of a well-known registry; None for other hosts (and for text that is not a registry)."""
    hostname = registry_hostname(registry) if registry else None
    if hostname is None:
        return None
    return next((notes for notes in KNOWN_REGISTRIES if notes.matches(hostname)), None)


def advice_for(registry: str | None, code: str | None) -> str | None:
    """The registry's usual cause of a preflight failure ``code``, when it has one."""
    notes = notes_for(registry)
    return notes.advice.get(code) if notes is not None and code is not None else None


def known_registries_json() -> str:
    """The host patterns and field help, for the dashboard's script to switch hints as the user types."""
    return json.dumps(
        [
            {"pattern": n.host_pattern, "username": n.username_help, "credential": n.credential_help}
            for n in KNOWN_REGISTRIES
        ]
    )


def supported_registries_table() -> str:
    """The README's *Supported registries* table (Markdown), made from ``KNOWN_REGISTRIES``."""
    rows = [
        "| registry | host | Username | Password |",
        "|---|---|---|---|",
        *(
            f"| {n.name} | `{n.example_host}` | {n.username_help} | {n.credential_help} |"
            for n in KNOWN_REGISTRIES
        ),
    ]
    return "\n".join(rows) + "\n"
