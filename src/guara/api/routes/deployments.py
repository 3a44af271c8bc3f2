"""Deployments of a service (filled by the deploy feature)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["deployments"])
