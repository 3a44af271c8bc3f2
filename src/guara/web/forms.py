"""Form values of the dashboard's credentials flow, and the small rules shared by its pages.

A password is never echoed back into a page: after a server round trip the password field is empty
and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, File, Form, UploadFile
from pydantic import SecretStr

from guara.core.credentials import KINDS, CredentialsChange, require_pair
from guara.core.errors import Conflict, GuaraError, InvalidInput
from guara.core.validation import DEFAULT_PORT, MAX_REGISTRY_SECRET
from guara.registry import suggested_kind
from guara.registry.cloud import MAX_JSON_KEY_CHARS

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
        "kind",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_region",
        "aws_role_arn",
        "google_json_key",
        "expires_on",
        "url",
        "secret",
    }
)
_FIELD_OF = {"registry_credentials": "username"}


@dataclass
class CloudForm:
    """The kind chosen in a credentials form and the cloud fields posted with it. Fields of the other
    kinds are posted too (every group is in the form; without JavaScript all are shown): only the
    chosen kind's are used."""

    kind: str = "password"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str | None = None
    aws_role_arn: str | None = None
    google_json_key: SecretStr | None = None
    problem: str = ""  # an uploaded file that cannot be a key: shown at the field

    @property
    def is_cloud(self) -> bool:
        return self.kind in ("aws_ecr", "google")

    @property
    def secret_was_sent(self) -> bool:
        return (self.kind == "aws_ecr" and self.aws_secret_access_key is not None) or (
            self.kind == "google" and self.google_json_key is not None
        )

    def fields(self) -> dict[str, Any]:
        """The chosen cloud kind's fields, as ``CredentialsChange`` and ``ConnectionTest`` take them."""
        if self.kind == "aws_ecr":
            return {
                "kind": "aws_ecr",
                "aws_access_key_id": self.aws_access_key_id,
                "aws_secret_access_key": self.aws_secret_access_key,
                "aws_region": self.aws_region,
                "aws_role_arn": self.aws_role_arn,
            }
        if self.kind == "google":
            if self.problem:
                raise InvalidInput(self.problem, field="google_json_key")
            return {"kind": "google", "google_json_key": self.google_json_key}
        if self.kind != "password":
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        return {}

    def change(self, registry: str) -> CredentialsChange:
        return CredentialsChange(registry, **self.fields())


async def cloud_form(
    kind: FormText = "password",
    aws_access_key_id: FormText = "",
    aws_secret_access_key: FormSecret = NO_SECRET,
    aws_region: FormText = "",
    aws_role_arn: FormText = "",
    google_json_key: Annotated[SecretStr, Form(max_length=MAX_JSON_KEY_CHARS)] = NO_SECRET,
    google_json_key_file: Annotated[UploadFile | None, File()] = None,
) -> CloudForm:
    """The cloud fields of a form post; an uploaded key file wins over the pasted text."""
    json_key = optional_secret(google_json_key)
    problem = ""
    if google_json_key_file is not None and google_json_key_file.filename:
        data = await google_json_key_file.read(MAX_JSON_KEY_CHARS + 1)
        if len(data) > MAX_JSON_KEY_CHARS:
            problem = f"the uploaded key file is over {MAX_JSON_KEY_CHARS} bytes: that is not a JSON key"
        elif data:
            try:
                json_key = SecretStr(data.decode("utf-8-sig"))  # byte-exact, a BOM aside
            except UnicodeDecodeError:
                problem = "the uploaded key file is not UTF-8 text: choose the .json file Google gave you"
    return CloudForm(
        kind=kind.strip() or "password",
        aws_access_key_id=optional_text(aws_access_key_id),
        aws_secret_access_key=optional_secret(aws_secret_access_key),
        aws_region=optional_text(aws_region),
        aws_role_arn=optional_text(aws_role_arn),
        google_json_key=json_key,
        problem=problem,
    )


CloudFormDep = Annotated[CloudForm, Depends(cloud_form)]


@dataclass
class CredentialsFormValues:
    """What the credentials fields show after a round trip (never the password or a cloud secret)."""

    registry: str = ""
    username: str = ""
    skip_verification: bool = False
    password_was_sent: bool = False
    kind: str = "password"
    aws_access_key_id: str = ""
    aws_region: str = ""
    aws_role_arn: str = ""

    @classmethod
    def posted(
        cls,
        *,
        registry: str,
        username: str,
        password: SecretStr,
        skip_verification: str,
        default_registry: str = "",
        cloud: CloudForm | None = None,
    ) -> CredentialsFormValues:
        """The values of a credentials form post; an empty Registry URL falls back to ``default_registry``."""
        cloud = cloud or CloudForm()
        return cls(
            registry=registry.strip() or default_registry,
            username=username,
            skip_verification=is_checked(skip_verification),
            password_was_sent=optional_secret(password) is not None
            if not cloud.is_cloud
            else cloud.secret_was_sent,
            kind=cloud.kind if cloud.kind in KINDS else "password",
            aws_access_key_id=cloud.aws_access_key_id or "",
            aws_region=cloud.aws_region or "",
            aws_role_arn=cloud.aws_role_arn or "",
        )

    @classmethod
    def suggested(cls, registry: str, *, kind: str | None = None) -> CredentialsFormValues:
        """Empty fields for ``registry``, with the kind its host suggests (ECR, Google) unless given."""
        return cls(registry=registry, kind=kind or suggested_kind(registry) or "password")


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
