"""Form values of the dashboard's credentials flow, and the small rules shared by its pages.

A password is never echoed back into a page: after a server round trip the password field is empty
and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Annotated

from fastapi import Form
from pydantic import SecretStr

from guara.core.credentials import CredentialsChange, require_pair
from guara.core.errors import Conflict, GuaraError, InvalidInput
from guara.core.validation import DEFAULT_PORT, MAX_REGISTRY_SECRET

FormText = Annotated[str, Form(max_length=2000)]
FormSecret = Annotated[SecretStr, Form(max_length=MAX_REGISTRY_SECRET)]
NO_SECRET = SecretStr("")

# The fields the service forms show an error next to; an error about any other field is shown for the
# whole form. The API's name for the credentials pair is shown at the username.
_SHOWN_FIELDS = frozenset(
    {
        "name",
        "build_method",
        "image",
        "registry",
        "username",
        "password",
        "port",
        "health_path",
        "platform",
        "expires_on",
        "url",
        "secret",
    }
)
_FIELD_OF = {"registry_credentials": "username"}


@dataclass
class CredentialsFormValues:
    """What the credentials fields show after a round trip (never the password)."""

    registry: str = ""
    username: str = ""
    skip_verification: bool = False
    password_was_sent: bool = False

    @classmethod
    def posted(
        cls,
        *,
        registry: str,
        username: str,
        password: SecretStr,
        skip_verification: str,
        default_registry: str = "",
    ) -> CredentialsFormValues:
        """The values of a credentials form post; an empty Registry URL falls back to ``default_registry``."""
        return cls(
            registry=registry.strip() or default_registry,
            username=username,
            skip_verification=is_checked(skip_verification),
            password_was_sent=optional_secret(password) is not None,
        )


@dataclass
class DeployFormValues:
    """The deploy settings as typed (kept as text, so a bad value is shown back as it was)."""

    image: str = ""
    platform: str = ""
    port: str = str(DEFAULT_PORT)
    health_path: str = ""
    auto_deploy_on_tag_move: bool = False


@dataclass
class WizardValues:
    name: str = ""
    image: str = ""
    port: str = str(DEFAULT_PORT)
    health_path: str = ""
    build_method: str = "docker_image"
    credentials: CredentialsFormValues = field(default_factory=CredentialsFormValues)


@dataclass
class PageErrors:
    """Errors of one form: per field, plus one message for the whole form."""

    fields: dict[str, str] = field(default_factory=dict)
    form: str = ""

    def __bool__(self) -> bool:
        return bool(self.fields or self.form)

    @classmethod
    def from_error(cls, exc: GuaraError) -> PageErrors:
        if isinstance(exc, InvalidInput) and exc.field:
            name = _FIELD_OF.get(exc.field, exc.field)
            if name in _SHOWN_FIELDS:
                return cls(fields={name: exc.message})
        if isinstance(exc, Conflict) and exc.code == "name_taken":
            return cls(fields={"name": exc.message})
        return cls(form=exc.message)


def port_number(text: str) -> int:
    """A port typed in a form; text that is not a number is refused like any invalid port."""
    digits = text.strip()
    if not digits.isascii() or not digits.isdecimal() or len(digits) > 5:
        raise InvalidInput("port must be a number from 1 to 65535", code="invalid_port", field="port")
    return int(digits)


def optional_text(value: str) -> str | None:
    return value if value.strip() else None


def optional_secret(value: SecretStr | None) -> SecretStr | None:
    return value if value is not None and value.get_secret_value() else None


def is_checked(value: str) -> bool:
    return value.lower() in ("on", "true", "1", "yes")


def new_credentials(
    *, registry: str, default_registry: str, username: str, password: SecretStr | None
) -> CredentialsChange | None:
    """Credentials typed in the create wizard; None when neither a username nor a password was given.

    The Registry URL falls back to the image's registry (JavaScript prefills it; without JavaScript
    the field may still be empty).
    """
    user = optional_text(username)
    secret = optional_secret(password)
    require_pair(user, secret)
    if user is None or secret is None:
        return None
    return CredentialsChange(registry.strip() or default_registry, user, secret)


def expiry_date(value: str) -> date | None:
    """The *expires on* field: empty clears the date; otherwise a calendar date (YYYY-MM-DD)."""
    text = value.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "enter the expiry date as YYYY-MM-DD, or leave it empty", field="expires_on"
        ) from None
