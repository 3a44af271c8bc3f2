"""Form values and page errors of the credentials forms (pure: no server)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from guara.core.errors import Conflict, GuaraError, InvalidInput, NotAuthenticated
from guara.web.forms import CredentialsFormValues, PageErrors


@pytest.mark.parametrize(
    ("error", "fields", "form"),
    [
        (InvalidInput("bad image", field="image"), {"image": "bad image"}, ""),
        (InvalidInput("both or neither", field="registry_credentials"), {"username": "both or neither"}, ""),
        (InvalidInput("invalid cursor", field="cursor"), {}, "invalid cursor"),
        (InvalidInput("no field"), {}, "no field"),
        (Conflict("taken", code="name_taken"), {"name": "taken"}, ""),
        (Conflict("a racing save"), {}, "a racing save"),
        (NotAuthenticated("the form expired"), {}, "the form expired"),
    ],
)
def test_page_errors_go_next_to_a_shown_field_or_to_the_form(
    error: GuaraError, fields: dict[str, str], form: str
) -> None:
    errors = PageErrors.from_error(error)
    assert (errors.fields, errors.form) == (fields, form)
    assert errors


def test_posted_credentials_values_never_keep_the_password() -> None:
    values = CredentialsFormValues.posted(
        registry="  ghcr.io ",
        username="alice",
        password=SecretStr("s3cret"),
        skip_verification="on",
        default_registry="docker.io",
    )
    assert values == CredentialsFormValues("ghcr.io", "alice", skip_verification=True, password_was_sent=True)
    assert "s3cret" not in repr(values)
    empty = CredentialsFormValues.posted(
        registry=" ", username="", password=SecretStr(""), skip_verification="", default_registry="docker.io"
    )
    assert empty == CredentialsFormValues("docker.io", "", skip_verification=False, password_was_sent=False)
    assert not PageErrors()
