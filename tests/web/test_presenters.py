"""View data of the dashboard: friendly preflight text, masked credentials, audit summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guara.core.audit import AuditEntry, entry_of
from guara.core.credential_health import HealthView
from guara.core.credentials import CredentialsView
from guara.registry import PreflightCode, PreflightResult
from guara.store.models import AuditLog
from guara.web.presenters import (
    MASKED_PASSWORD,
    ago,
    audit_row,
    connection_result,
    connection_result_from,
    credentials_display,
    preflight_advice,
    rate_limited_result,
)

CODES = ("invalid_url", "auth_failed", "manifest_not_found", "timeout", "ssrf_blocked", "network_error")
NOW = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


def test_each_preflight_code_has_its_own_advice() -> None:
    advice = [preflight_advice(code) for code in CODES]
    assert len({a.title for a in advice}) == len(CODES)
    assert all(a.title and len(a.hint) > 40 for a in advice)
    assert "8 seconds" in preflight_advice("timeout").title
    assert "3.5 seconds" in preflight_advice("timeout", timeout_s=3.5).title
    assert preflight_advice(None).title == "Connection works"
    assert preflight_advice("something_new").title == "The test failed"


def test_result_carries_the_server_message_and_time() -> None:
    view = connection_result(
        ok=False, code="auth_failed", message="token server said 401", elapsed_ms=42, digest=None, timeout_s=8
    )
    assert view.as_json() == {
        "ok": False,
        "code": "auth_failed",
        "title": "The registry rejected these credentials",
        "hint": preflight_advice("auth_failed").hint,
        "message": "token server said 401",
        "elapsed_ms": 42,
        "digest": None,
        "soft": False,
        "retry_after": None,
    }
    limited = rate_limited_result(limit=5, retry_after=17)
    assert limited.soft and limited.title == "You've run 5 tests in the last minute — try again in 17 seconds"


def test_result_from_a_preflight() -> None:
    digest = "sha256:" + "a" * 64
    failed = PreflightResult(
        ok=False, code=PreflightCode.TIMEOUT, message="no answer", digest=None, elapsed_ms=3501
    )
    assert connection_result_from(failed, timeout_s=3.5) == connection_result(
        ok=False, code="timeout", message="no answer", elapsed_ms=3501, digest=None, timeout_s=3.5
    )
    assert (
        connection_result_from(failed, timeout_s=3.5).title
        == "The registry did not answer within 3.5 seconds"
    )
    passed = PreflightResult(ok=True, code=None, message="image found", digest=digest, elapsed_ms=12)
    view = connection_result_from(passed, timeout_s=8)
    assert (view.ok, view.code, view.title, view.digest) == (True, None, "Connection works", digest)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(hours=2), "2 hours ago"),
        (timedelta(days=3), "on 30 Dec 2024 at 12:00 UTC"),
    ],
)
def test_ago(delta: timedelta, text: str) -> None:
    assert ago(NOW - delta, now=NOW) == text


def _view(verification: str, verified_at: datetime | None) -> CredentialsView:
    return CredentialsView(
        registry="ghcr.io",
        username_masked="a•••",
        has_password=True,
        verified_at=verified_at,
        verification=verification,  # type: ignore[arg-type]
        updated_at=NOW,
        health=HealthView("unknown", None, None, None, None, "", None),
    )


def test_credentials_display() -> None:
    verified = credentials_display(_view("passed", NOW - timedelta(minutes=3)), now=NOW)
    assert verified.verified and verified.status == "verified 3 minutes ago"
    assert verified.password_masked == MASKED_PASSWORD
    overridden = credentials_display(_view("overridden", None), now=NOW)
    assert not overridden.verified and overridden.status == "saved without verifying"


def _entry(action: str, details: dict[str, object], created_at: datetime = NOW) -> AuditEntry:
    row = AuditLog(
        id=7,
        action=action,
        actor_email="ana@example.com",
        target_type="service",
        target_id="0b4c",
        target_name="api",
        details=details,
        created_at=created_at,
    )
    return entry_of(row)


@pytest.mark.parametrize(
    ("action", "details", "summary", "outcome"),
    [
        (
            "service.create",
            {"image": "ghcr.io/a/b:1", "credentials": "added", "registry": "ghcr.io", "preflight": "passed"},
            "Created the service with registry credentials for ghcr.io: Test Connection passed",
            "passed",
        ),
        (
            "service.update",
            {
                "credentials": "updated",
                "registry": "ghcr.io",
                "changed": ["username"],
                "preflight": "overridden",
            },
            "Updated registry credentials for ghcr.io (username changed): saved without verifying",
            "overridden",
        ),
        (
            "service.update",
            {"credentials": "removed", "registry": "ghcr.io"},
            "Removed registry credentials for ghcr.io; the service now pulls anonymously",
            "removed",
        ),
        ("service.create", {"image": "nginx"}, "Created the service from nginx (anonymous pulls)", ""),
    ],
)
def test_audit_rows(action: str, details: dict[str, object], summary: str, outcome: str) -> None:
    row = audit_row(_entry(action, details))
    assert (row.summary, row.outcome) == (summary, outcome)
    assert row.actor == "ana@example.com" and row.when == "2025-01-02 12:00:00 UTC"


def test_naive_stored_times_read_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)  # what SQLite hands back
    assert ago(naive - timedelta(minutes=5), now=NOW) == "5 minutes ago"
    row = audit_row(_entry("service.create", {"image": "nginx"}, created_at=naive))
    assert (row.when, row.when_iso) == ("2025-01-02 12:00:00 UTC", "2025-01-02T12:00:00+00:00")
