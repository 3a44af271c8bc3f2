"""Finished view data for the dashboard: friendly preflight results, credentials, audit entries.

Templates and the dashboard's JSON endpoints both use these, so a result reads the same whether the
page was rendered by the server (no JavaScript) or updated by ``guara.js``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from guara import PREFLIGHT_TIMEOUT_S
from guara.core.audit import AuditEntry
from guara.core.credential_health import HealthView, TagMoved
from guara.core.credentials import CredentialsView
from guara.core.deployments import DeploymentView
from guara.registry import PreflightResult
from guara.registry.known import advice_for

MASKED_PASSWORD = "••••••••"  # noqa: S105  (what the page shows instead of a stored password)


@dataclass(frozen=True)
class Advice:
    """What happened, in the user's words, and what to try next."""

    title: str
    hint: str


def preflight_advice(
    code: str | None, *, timeout_s: float = PREFLIGHT_TIMEOUT_S, registry: str | None = None
) -> Advice:
    """Friendly text for one of the six preflight codes (or success when ``code`` is None); for a
    well-known ``registry``, its usual cause of that failure."""
    seconds = f"{timeout_s:g}"
    table = {
        None: Advice(
            "Connection works",
            "The registry accepted these credentials and the image exists. You can save them now.",
        ),
        "invalid_url": Advice(
            "The registry address is malformed or cannot be reached",
            "Check the Registry URL (a host such as ghcr.io or registry.example.com:5000, or an https:// "
            "URL) and the image reference, and that the registry is up.",
        ),
        "auth_failed": Advice(
            "The registry rejected these credentials",
            "Check the username and the password or token. Tokens need pull (read) access; for GCR the "
            "username is oauth2accesstoken or _json_key_base64.",
        ),
        "manifest_not_found": Advice(
            "The image was not found in this registry",
            "Check the repository name and tag. Some registries also answer this way when these "
            "credentials cannot read the repository: check the account's access.",
        ),
        "timeout": Advice(
            f"The registry did not answer within {seconds} seconds",
            "Try again in a moment. If the registry is down for maintenance and you are sure of the "
            "credentials, tick Save without verifying.",
        ),
        "ssrf_blocked": Advice(
            "This registry address is on a blocked network",
            "The host resolves to a private, loopback or reserved address, which guara never connects "
            "to. Use the registry's public hostname.",
        ),
        "network_error": Advice(
            "A network error stopped the test",
            "DNS, TLS or the connection failed. Check that the hostname resolves and that the registry "
            "has a valid TLS certificate, then try again.",
        ),
    }
    advice = table.get(code) or Advice(
        "The test failed", "Check the registry, the username and the password, then try again."
    )
    known = advice_for(registry, code)
    return Advice(advice.title, known) if known else advice


@dataclass(frozen=True)
class ConnectionResult:
    """One Test Connection outcome as the page shows it (and as the JSON endpoint returns it)."""

    ok: bool
    code: str | None
    title: str
    hint: str
    message: str
    elapsed_ms: int | None
    digest: str | None = None
    soft: bool = False  # a rate-limit notice, not a failure of the credentials
    retry_after: int | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def connection_result(
    *,
    ok: bool,
    code: str | None,
    message: str,
    elapsed_ms: int | None,
    digest: str | None,
    timeout_s: float,
    registry: str | None = None,
) -> ConnectionResult:
    advice = preflight_advice(None if ok else code, timeout_s=timeout_s, registry=registry)
    return ConnectionResult(ok, code, advice.title, advice.hint, message, elapsed_ms, digest)


def connection_result_from(
    result: PreflightResult, *, timeout_s: float, registry: str | None = None
) -> ConnectionResult:
    """A Test Connection outcome against ``registry``, as the page and the JSON endpoint show it."""
    return connection_result(
        ok=result.ok,
        code=result.code.value if result.code else None,
        message=result.message,
        elapsed_ms=result.elapsed_ms,
        digest=result.digest,
        timeout_s=timeout_s,
        registry=registry,
    )


def rate_limited_result(*, limit: int, retry_after: int) -> ConnectionResult:
    return ConnectionResult(
        ok=False,
        code="rate_limited",
        title=f"You've run {limit} tests in the last minute — try again in {retry_after} seconds",
        hint="Test Connection is limited to protect the registries you test against. "
        "Your form is kept as it is.",
        message="",
        elapsed_ms=None,
        soft=True,
        retry_after=retry_after,
    )


# --- credentials -----------------------------------------------------------------------------------


KIND_LABELS = {
    "password": "User name and password",
    "aws_ecr": "AWS access key (ECR)",
    "google": "Google service account key",
}


@dataclass(frozen=True)
class CredentialsDisplay:
    registry: str
    username_masked: str
    password_masked: str
    verified: bool
    status: str  # "verified 3 minutes ago" or "saved without verifying"
    when_iso: str | None
    kind: str = "password"
    # (label, value) rows that tell the stored credentials apart, masked; never a secret.
    details: tuple[tuple[str, str], ...] = ()

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


def credentials_display(view: CredentialsView, *, now: datetime | None = None) -> CredentialsDisplay:
    verified = view.verification == "passed" and view.verified_at is not None
    when = view.verified_at if verified else view.updated_at
    status = f"verified {ago(when, now=now)}" if verified else "saved without verifying"
    return CredentialsDisplay(
        registry=view.registry,
        username_masked=view.username_masked
        or view.aws_access_key_id_masked
        or view.google_client_email
        or "",
        password_masked=MASKED_PASSWORD if view.has_password else "(none)",
        verified=verified,
        status=status,
        when_iso=when.isoformat() if when else None,
        kind=view.kind,
        details=_credential_details(view, MASKED_PASSWORD if view.has_password else "(none)"),
    )


def _credential_details(view: CredentialsView, secret_masked: str) -> tuple[tuple[str, str], ...]:
    if view.kind == "aws_ecr":
        rows = [
            ("Access key ID", view.aws_access_key_id_masked or ""),
            ("Secret access key", secret_masked),
            ("Region", view.aws_region or "from the registry host"),
        ]
        if view.aws_role_arn:
            rows.append(("Role", view.aws_role_arn))
        return tuple(rows)
    if view.kind == "google":
        return (("Service account", view.google_client_email or ""), ("JSON key", secret_masked))
    return (("Username", view.username_masked or ""), ("Password", secret_masked))


@dataclass(frozen=True)
class HealthDisplay:
    """The health of stored credentials as a line people read: "verified 2 hours ago", "failing since
    09:12 UTC — auth_failed: …", with a tone for its colour."""

    status: str  # passing | failing | unknown
    tone: str  # ok | warn | error | muted
    text: str
    detail: str  # the code and message of a failure or an expiry warning, else ""
    when_iso: str | None
    expires_on: str  # ISO date or ""
    problem: bool


HEALTH_HINTS = {
    "auth_failed": "update the password or token",
    "manifest_not_found": "check the image reference, or that these credentials can read it",
    "credentials_unreadable": "enter the credentials again",
}


def health_display(view: HealthView, *, now: datetime | None = None) -> HealthDisplay:
    detail = f"{view.code}: {view.message}" if view.code else ""
    hint = HEALTH_HINTS.get(view.code or "")
    if hint and view.status == "failing":
        detail = f"{detail.rstrip('. ')}; {hint}"
    expires_on = view.expires_on.isoformat() if view.expires_on else ""
    if view.status == "failing" and view.failing_since is not None:
        since = _as_utc(view.failing_since)
        today = (now or datetime.now(UTC)).date() == since.date()
        text = "failing since " + since.strftime("%H:%M UTC" if today else "%d %b %Y %H:%M UTC")
        return HealthDisplay("failing", "error", text, detail, since.isoformat(), expires_on, True)
    if view.status == "passing" and view.last_checked_at is not None:
        tone = "warn" if view.warns else "ok"
        text = f"verified {ago(view.last_checked_at, now=now)}"
        when = _as_utc(view.last_checked_at).isoformat()
        return HealthDisplay("passing", tone, text, detail, when, expires_on, view.warns)
    return HealthDisplay(
        "unknown", "warn" if view.warns else "muted", "not checked yet", detail, None, expires_on, view.warns
    )


@dataclass(frozen=True)
class TagMovedDisplay:
    text: str
    digest: str
    deployed_digest: str


def tag_moved_display(moved: TagMoved) -> TagMovedDisplay:
    return TagMovedDisplay(
        f"{moved.tag} now points to {moved.digest} — deployed {moved.deployed_digest}",
        moved.digest,
        moved.deployed_digest,
    )


def _as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite hands back naive ones, which are UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ago(moment: datetime | None, *, now: datetime | None = None) -> str:
    """'just now', '5 minutes ago', '3 hours ago', else a UTC date."""
    if moment is None:
        return "never"
    moment = _as_utc(moment)
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    if seconds < 86400:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    return moment.astimezone(UTC).strftime("on %d %b %Y at %H:%M UTC")


def utc_text(moment: datetime) -> str:
    return _as_utc(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- audit log -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    id: int
    when: str
    when_iso: str
    actor: str
    service: str
    service_id: str
    summary: str
    outcome: str  # passed | overridden | removed | "" (not a credentials change)


def audit_row(entry: AuditEntry) -> AuditRow:
    created = _as_utc(entry.created_at)
    return AuditRow(
        id=entry.id,
        when=utc_text(created),
        when_iso=created.isoformat(),
        actor=entry.actor_email,
        service=entry.target_name,
        service_id=entry.target_id if entry.target_type == "service" and not entry.target_deleted else "",
        summary=entry.summary,
        outcome=entry.outcome,
    )


# --- deployments -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentDisplay:
    id: str
    status: str
    active: bool
    when: str
    when_iso: str
    digest: str | None
    pulled: str  # "with registry credentials" | "anonymously"
    code: str | None
    message: str
    url: str | None = None
    started: str = ""  # "5 minutes ago" while it runs
    started_iso: str = ""


def deployment_display(row: DeploymentView, *, now: datetime | None = None) -> DeploymentDisplay:
    created = _as_utc(row.created_at)
    return DeploymentDisplay(
        id=str(row.id),
        status=row.status,
        active=row.active,
        when=ago(created, now=now),
        when_iso=created.isoformat(),
        digest=row.digest,
        pulled="with registry credentials" if row.with_credentials else "anonymously",
        code=row.code,
        message=row.message,
        url=row.url,
        started=ago(row.started_at, now=now) if row.started_at else "",
        started_iso=_as_utc(row.started_at).isoformat() if row.started_at else "",
    )
