"""Scenario modules over HTTP (场景模块, docs/modules.md): installed modules, their state and KPIs; install, enable,
disable, remove, roll back."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["modules"])
