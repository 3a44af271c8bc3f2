"""The stored login of the remote commands: one JSON file, readable by its owner only."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from guara.config import ClientSettings
from guara.remote.errors import RemoteError

CONFIG_FILE = "config.json"
API_PREFIX = "/api/v1"  # a URL copied from the API's address still names the server
NOT_LOGGED_IN = "not logged in: run 'guara login --url URL --token-stdin' (or set GUARA_URL and GUARA_TOKEN)"


@dataclass(frozen=True)
class Login:
    url: str
    token: SecretStr


def config_file(settings: ClientSettings) -> Path:
    return settings.config_dir / CONFIG_FILE


def normalize_url(url: str) -> str:
    """The server's base URL (scheme, host, port and any path prefix), without a trailing slash."""
    text = url.strip().rstrip("/").removesuffix(API_PREFIX)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError("invalid_url", f"'{url}' is not an http:// or https:// URL of a guara server")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise RemoteError("invalid_url", "the URL must not hold credentials, a query or a fragment")
    return text


def is_plain_http_off_machine(url: str) -> bool:
    """Whether a token sent to ``url`` would cross a network unencrypted."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def save(settings: ClientSettings, login: Login) -> Path:
    """Write the login atomically: the directory 0700, the file 0600 from its first byte."""
    directory = settings.config_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    body = json.dumps({"url": login.url, "token": login.token.get_secret_value()}, indent=2) + "\n"
    # mkstemp creates the file 0600; it only becomes config.json once complete.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / CONFIG_FILE)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return directory / CONFIG_FILE


def _stored(settings: ClientSettings) -> dict[str, str]:
    path = config_file(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RemoteError("bad_config", f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise RemoteError("bad_config", f"{path} does not hold a JSON object")
    return {key: value for key, value in data.items() if isinstance(value, str)}


def current(settings: ClientSettings) -> Login:
    """The login to use: GUARA_URL / GUARA_TOKEN, each falling back to the stored login. The stored
    token only ever goes to the stored URL: with GUARA_URL naming another server, GUARA_TOKEN is needed."""
    stored = _stored(settings) if settings.url is None or settings.token is None else {}
    url = normalize_url(settings.url) if settings.url else None
    token = settings.token
    if token is None and stored.get("token") and stored.get("url"):
        if url is not None and url != normalize_url(stored["url"]):
            raise RemoteError(
                "not_logged_in",
                f"GUARA_URL names {url}, not the server logged in to ({stored['url']}): set GUARA_TOKEN too",
            )
        token = SecretStr(stored["token"])
    url = url or (normalize_url(stored["url"]) if stored.get("url") else None)
    if url is None or token is None:
        raise RemoteError("not_logged_in", NOT_LOGGED_IN)
    return Login(url, token)
