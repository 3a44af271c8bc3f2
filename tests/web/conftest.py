"""Dashboard fixtures: the API tests' lab platform (lab CA trusted, loopback allowed), reused here."""

from __future__ import annotations

from tests.api.conftest import lab_env, lab_platform

__all__ = ["lab_env", "lab_platform"]
