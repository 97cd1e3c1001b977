"""The aggregator's package tables, on the one `cloud_sync.tables.metadata` (created by m0003_packages)."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.tables import metadata

packages = sa.Table(
    "packages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("stores", sa.Text, nullable=False),  # JSON list: ["*"] or store ids
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),  # the signed manifest.json
    sa.Column("content", sa.LargeBinary, nullable=False),  # the package file (in the database: replicas share it)
    sa.Column("published_at", sa.String(40), nullable=False),
    sa.Column("published_by", sa.String(100), nullable=False),
    sa.Column("withdrawn_at", sa.String(40)),
    sa.UniqueConstraint("kind", "name", "version", name="packages_version_once"),
)

package_status = sa.Table(
    "package_status",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id"), nullable=False),
    sa.Column("store", sa.String(64), sa.ForeignKey("stores.id"), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # installed, failed, rolled_back
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("from_version", sa.BigInteger),
    sa.Column("to_version", sa.BigInteger),
    sa.Column("code", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("box_at", sa.String(40)),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Index("package_status_by_store", "store", "package_id"),
)

TABLES = [packages, package_status]
