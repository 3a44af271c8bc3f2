"""The OpenAPI document says what the API does: schemathesis drives every operation with generated
requests (bounded, derandomised) and runs all its checks on every answer: status codes and bodies as
documented, schema-valid requests accepted, schema-invalid ones rejected, correct ``Allow`` headers.

Test Connection gets generated image references and registries: the resolver answers nothing and every
connect off loopback is refused, so no generated host is ever looked up or reached.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from guara.app import create_app
from guara.context import AppContext
from guara.core import accounts
from tests.conftest import build_context
from tests.netguard.doubles import ScriptedResolver
from tests.socket_audit import SocketAudit
from tests.support import run

# Its inputs follow rules a JSON schema cannot state (the reference grammar, a registry naming the
# image's, a stored password standing in for a missing one; the current password when changing it): a
# schema-valid body may still be a 422.
SEMANTIC_INPUT = {"POST /api/v1/registry/test", "PUT /api/v1/account/password"}


@pytest.fixture
def sqlite_context(tmp_path: Path) -> Iterator[AppContext]:
    context = build_context(
        {
            "GUARA_DATA_DIR": str(tmp_path),
            "GUARA_DATABASE_URL": f"sqlite:///{tmp_path / 'guara.db'}",
            "GUARA_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
    )
    yield context
    context.close()


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_the_api_does_what_its_schema_says(
    sqlite_context: AppContext, loopback_only: SocketAudit, mode: GenerationMode
) -> None:
    context = sqlite_context
    context.registry = dataclasses.replace(context.registry, resolver=ScriptedResolver({}))
    run(accounts.create_user, context, email="schema@example.com", password="long enough pw")
    token = run(accounts.create_api_token, context, email="schema@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(context))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here, as it should
        excluded = [positive_data_acceptance] if operation.label in SEMANTIC_INPUT else []

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        try:
            exercise()
        except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
            continue
        except Exception as exc:  # collect every operation's failures, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_operation_has_a_short_id_and_declares_its_errors(context: AppContext) -> None:
    document = create_app(context).openapi()
    operations = [op for path in document["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert all(op_id.isidentifier() and "api_v1" not in op_id for op_id in ids)
    assert {"create_project", "test_connection", "start_deployment", "create_service"} <= set(ids)
    for operation in operations:
        assert {"401", "422"} <= set(operation["responses"]), operation["operationId"]
