"""Which module packages a store is served, and which module versions it must roll back (docs/canary.md).

A `module` package is served to a store only when the store is among its manifest's `stores` and its version's
rollout is piloting with the store as a pilot, or promoted. A version without a rollout is held: publishing a
module is not yet rolling it out. When a rollout is rolled back, each store it reached (its pilots; every store
the package names once it was promoted) is told to return to the newest version it is still served, for as long
as no newer version is served to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cloud_sync.modules.rollouts import MODULE_KIND, PILOTING, PROMOTED, ROLLED_BACK
from cloud_sync.modules.tables import module_rollout_stores, module_rollouts
from cloud_sync.packages.tables import packages


@dataclass(frozen=True, slots=True)
class Served:
    """For one store: the module packages it must not be served (ids), and the rollbacks it must make."""

    held: frozenset[int] = frozenset()
    rollbacks: list[dict[str, Any]] = field(default_factory=list)


def served_to(conn: sa.Connection, store: str) -> Served:
    """The gate's answer for `store` (a few queries over the module packages and rollouts; both lists are small)."""
    module_packages = conn.execute(
        sa.select(packages.c.id, packages.c.name, packages.c.version, packages.c.stores, packages.c.withdrawn_at).where(
            packages.c.kind == MODULE_KIND
        )
    ).all()
    if not module_packages:
        return Served()
    rollouts = {
        (str(r.name), int(r.version)): r
        for r in conn.execute(
            sa.select(
                module_rollouts.c.id,
                module_rollouts.c.name,
                module_rollouts.c.version,
                module_rollouts.c.state,
                module_rollouts.c.promoted_at,
            )
        )
    }
    piloted_here = {
        int(r.rollout_id)
        for r in conn.execute(
            sa.select(module_rollout_stores.c.rollout_id).where(module_rollout_stores.c.store == store)
        )
    }
    held: set[int] = set()
    newest_served: dict[str, int] = {}
    rolled_back: dict[str, int] = {}
    for p in module_packages:
        targets = json.loads(p.stores)
        if not ("*" in targets or store in targets):
            continue  # never offered to this store anyway (cloud_sync.packages.store.for_store)
        name, version = str(p.name), int(p.version)
        rollout = rollouts.get((name, version))
        reached = rollout is not None and (int(rollout.id) in piloted_here or rollout.promoted_at is not None)
        serves = rollout is not None and (
            rollout.state == PROMOTED or (rollout.state == PILOTING and int(rollout.id) in piloted_here)
        )
        if serves and p.withdrawn_at is None:
            newest_served[name] = max(newest_served.get(name, 0), version)
        else:
            held.add(int(p.id))
        if rollout is not None and rollout.state == ROLLED_BACK and reached:
            rolled_back[name] = max(rolled_back.get(name, 0), version)
    rollbacks = [
        {"kind": MODULE_KIND, "name": name, "version": version, "to_version": newest_served.get(name, 0)}
        for name, version in sorted(rolled_back.items())
        if version > newest_served.get(name, 0)
    ]
    return Served(frozenset(held), rollbacks)


def is_held(conn: sa.Connection, store: str, package_id: int) -> bool:
    """A module package this store may not download (yet, or any more)."""
    kind = conn.execute(sa.select(packages.c.kind).where(packages.c.id == package_id)).scalar()
    return kind == MODULE_KIND and package_id in served_to(conn, store).held
