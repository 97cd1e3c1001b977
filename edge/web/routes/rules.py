"""Low-code rules over HTTP (业务规则, docs/rules.md): write, review, dry-run, activate, retire; firings, holds, tickets."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["rules"])
