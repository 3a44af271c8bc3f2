"""Deleting from the dashboard without JavaScript: the typed name is checked by the server too, and the
audit log keeps the entries of the deleted service, no longer linking to its page."""

from __future__ import annotations

import uuid

from guara.context import AppContext
from guara.core import services
from tests.support import make_client, run
from tests.web.support import WebUser, create_project, principal_of, text_of


def test_a_service_is_deleted_only_with_its_name_typed(context: AppContext) -> None:
    with make_client(context) as http:
        owner = WebUser.sign_in(http, context, "owner@example.com")
        project_id = create_project(context, owner.email, "shop")
        service = run(
            services.create_service,
            context,
            principal_of(context, owner.email),
            project_id=uuid.UUID(project_id),
            name="web",
            image="ghcr.io/acme/web:v1",
        )
        wrong = owner.post_form(f"/services/{service.id}/delete", {"confirm": "WEB"})
        assert wrong.status_code == 422 and "type the service's name exactly" in text_of(wrong.text)
        assert owner.http.get(f"/services/{service.id}").status_code == 200
        deleted = owner.post_form(f"/services/{service.id}/delete", {"confirm": "web"})
        assert (deleted.status_code, deleted.headers["location"]) == (303, f"/projects/{project_id}")
        assert owner.http.get(f"/services/{service.id}").status_code == 404
        audit = owner.http.get(f"/projects/{project_id}/audit-logs")
        assert "Deleted the service (ghcr.io/acme/web:v1)" in text_of(audit.text)
        assert f'href="/services/{service.id}"' not in audit.text
