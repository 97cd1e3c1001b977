"""The aggregator's tables of module rollouts (on the one `cloud_sync.tables.metadata`, created by m0004_modules)."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.packages import tables as _packages  # noqa: F401  (module_rollouts references packages.id)
from cloud_sync.tables import metadata

Big = sa.BigInteger

# One version of one module marked for pilot stores: piloting -> promoted (every store the package names) or
# rolled_back (by HQ, or automatically when a KPI report breaks a threshold). Thresholds are kept in basis points
# (9200 = 92 %) so that the gate compares integers: right * 10000 >= precision_min_bp * judged.
module_rollouts = sa.Table(
    "module_rollouts",
    metadata,
    sa.Column("id", Big().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", Big, nullable=False),
    sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # piloting, promoted, rolled_back
    # = name while piloting, else NULL: the unique constraint lets one rollout per module pilot at a time, on every
    # replica (NULLs never collide, on SQLite and PostgreSQL alike).
    sa.Column("piloting_name", sa.String(64)),
    sa.Column("precision_min_bp", sa.Integer, nullable=False),
    sa.Column("false_positive_max_bp", sa.Integer, nullable=False),
    sa.Column("window_size", sa.Integer, nullable=False),
    sa.Column("min_decisions", sa.Integer, nullable=False),
    sa.Column("thresholds_from", sa.String(16), nullable=False),  # default, manifest, request (the last applied)
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("promoted_at", sa.String(40)),
    sa.Column("promoted_by", sa.String(100)),
    sa.Column("rolled_back_at", sa.String(40)),
    sa.Column("rolled_back_by", sa.String(100)),
    sa.Column("reason", sa.Text),  # why it was rolled back (Chinese / English)
    sa.UniqueConstraint("name", "version", name="module_rollouts_version_once"),
    sa.UniqueConstraint("piloting_name", name="module_rollouts_one_pilot_per_module"),
)

module_rollout_stores = sa.Table(
    "module_rollout_stores",
    metadata,
    sa.Column(
        "rollout_id", Big().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("module_rollouts.id"), primary_key=True
    ),
    sa.Column("store", sa.String(64), sa.ForeignKey("stores.id"), primary_key=True),
)
sa.Index("module_rollout_stores_by_store", module_rollout_stores.c.store)

# The latest KPI report of each store for each module version (a report replaces the one before it).
module_kpis = sa.Table(
    "module_kpis",
    metadata,
    sa.Column("store", sa.String(64), sa.ForeignKey("stores.id"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", Big, primary_key=True, autoincrement=False),
    sa.Column("judged", Big, nullable=False),
    sa.Column("right_count", Big, nullable=False),
    sa.Column("wrong_count", Big, nullable=False),
    sa.Column("precision_rate", sa.Float),  # as the box computed it (right / judged); None before any judged decision
    sa.Column("false_positive_rate", sa.Float),
    sa.Column("window_size", sa.Integer, nullable=False),
    sa.Column("box_at", sa.String(40)),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("reports", Big, nullable=False),  # how many reports the store sent for this version
)

# The rollouts' audit trail: created, promoted, promotion refused, rolled back (by whom, or by which report).
module_rollout_events = sa.Table(
    "module_rollout_events",
    metadata,
    sa.Column("id", Big().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column(
        "rollout_id", Big().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("module_rollouts.id"), nullable=False
    ),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("detail", sa.Text, nullable=False),  # JSON
)
sa.Index("module_rollout_events_by_rollout", module_rollout_events.c.rollout_id, module_rollout_events.c.id)

TABLES = [module_rollouts, module_rollout_stores, module_kpis, module_rollout_events]
