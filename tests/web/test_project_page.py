"""The project page lists services a page at a time, by name (keyset pages: the last is as cheap as the
first), with each page's own credentials and running addresses."""

from __future__ import annotations

import re
import uuid

from pydantic import SecretStr

from guara.context import AppContext
from guara.core import services
from guara.core.credentials import CredentialsChange
from guara.core.services import SERVICES_PAGE
from tests.support import make_client, run
from tests.web.support import WebUser, create_project, principal_of, text_of


def _names(page: str) -> list[str]:
    return re.findall(r'<a href="/services/[0-9a-f-]+">([a-z0-9-]+)</a>', page)


def test_pages_of_services_by_name(owner: WebUser, lab_context: AppContext) -> None:
    project_id = create_project(lab_context, owner.email)
    principal = principal_of(lab_context, owner.email)
    count = 2 * SERVICES_PAGE + 7
    names = [f"svc-{i:03d}" for i in range(count)]

    async def arrange() -> None:
        for name in reversed(names):  # created out of order: the page sorts
            with_credentials = name == names[SERVICES_PAGE + 3]  # on the second page
            await services.create_service(
                lab_context,
                principal,
                project_id=uuid.UUID(project_id),
                name=name,
                image="registry.example.com/acme/api:v1",
                registry_credentials=CredentialsChange("registry.example.com", "u", SecretStr("p"))
                if with_credentials
                else None,
                skip_verification=True,
            )

    run(arrange)
    seen: list[str] = []
    url: str | None = f"/projects/{project_id}"
    pages = 0
    while url is not None:
        page = owner.http.get(url)
        assert page.status_code == 200
        listed = _names(page.text)
        assert 0 < len(listed) <= SERVICES_PAGE
        assert f"{count} services" in text_of(page.text)
        if names[SERVICES_PAGE + 3] in listed:
            row = re.search(rf">{names[SERVICES_PAGE + 3]}</a>.*?</tr>", page.text, re.S)
            assert row and "yes" in row.group(0)
        seen += listed
        pages += 1
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == names and pages == 3


def test_odd_page_positions(owner: WebUser, lab_context: AppContext) -> None:
    project_id = create_project(lab_context, owner.email)
    base = f"/projects/{project_id}"
    assert "No services yet" in owner.http.get(base).text
    assert "No more services" in owner.http.get(base, params={"after": "zzz"}).text
    assert owner.http.get(base, params={"after": "x" * 64}).status_code == 422
    assert owner.http.get(base, params={"after": "' OR 1=1 --"}).status_code == 200
    with make_client(lab_context) as other_http:
        stranger = WebUser.sign_in(other_http, lab_context, "stranger@example.com")
        assert stranger.http.get(base).status_code == 404
