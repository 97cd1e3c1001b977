"""The aggregator's tables (SQLAlchemy Core), one MetaData for all of them; the same on SQLite and PostgreSQL.

Facts are kept per store and aggregated at ingest where HQ reads aggregates (stock, sales by day, the general
ledger by period), so that HQ queries over a hundred stores and a year stay small. Money and quantities are
integer fen and base units (BigInteger), never floats.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
Big = sa.BigInteger

schema_versions = sa.Table(
    "schema_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", sa.String(40), nullable=False),
)

companies = sa.Table(
    "companies",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("company", sa.String(64), sa.ForeignKey("companies.id"), nullable=False),
    sa.Column("cold_chain", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lat", sa.Float),
    sa.Column("lon", sa.Float),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("disabled_at", sa.String(40)),
)

store_keys = sa.Table(
    "store_keys",
    metadata,
    sa.Column("key_id", sa.String(8), primary_key=True),
    sa.Column("store", sa.String(64), sa.ForeignKey("stores.id"), nullable=False, index=True),
    sa.Column("secret", sa.String(64), nullable=False),  # base64url; HMAC needs the secret itself
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.String(40)),  # set when a newer key replaces it (grace period)
    sa.Column("revoked_at", sa.String(40)),
)

hq_tokens = sa.Table(
    "hq_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("revoked_at", sa.String(40)),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("seq", Big, primary_key=True, autoincrement=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("first_row", Big),
    sa.Column("last_row", Big),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("applied_at", sa.String(40)),
    sa.Column("body", sa.LargeBinary),  # the compressed body, kept only while the batch waits behind a gap
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("store", sa.String(64), sa.ForeignKey("stores.id"), primary_key=True),
    sa.Column("applied_through", Big, nullable=False, server_default="0"),
    sa.Column("last_row_seq", Big, nullable=False, server_default="0"),
    sa.Column("last_batch_at", sa.String(40)),
    sa.Column("last_contact_at", sa.String(40)),
    sa.Column("head_seq", Big),
    sa.Column("pending_rows", Big),
    sa.Column("oldest_pending_at", sa.String(40)),  # the aggregator's clock (corrected for the box's skew)
    sa.Column("clock_offset_s", sa.Float),  # aggregator clock minus box clock, at the last contact
)

rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("store", sa.String(64)),
    sa.Column("key_id", sa.String(16)),
    sa.Column("code", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("doc_id", Big, primary_key=True, autoincrement=False),
    sa.Column("doc_no", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("business_date", sa.String(10), nullable=False),
    sa.Column("posted_at", sa.String(40), nullable=False),
    sa.Column("counterparty", sa.String(64)),
    sa.Column("location", sa.String(64)),
    sa.Column("to_location", sa.String(64)),
    sa.Column("reverses_id", Big),
    sa.Column("external_ref", sa.String(200)),
    sa.Column("gross_fen", Big, nullable=False),
    sa.Column("tax_fen", Big, nullable=False),
    sa.Column("cost_fen", Big, nullable=False),
    sa.Column("voucher_no", sa.String(64)),
    sa.Column("voucher", sa.Text),  # JSON [[account, debit_fen, credit_fen], ...]; the voucher's date is business_date
    sa.Column("outbox_seq", Big, nullable=False),
)
sa.Index("documents_by_voucher_date", documents.c.business_date, documents.c.store)

stock = sa.Table(
    "stock",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("location", sa.String(64), primary_key=True),
    sa.Column("lot", sa.String(64), primary_key=True),
    sa.Column("qty", Big, nullable=False),
    sa.Column("value_fen", Big, nullable=False),
)
sa.Index("stock_by_sku", stock.c.sku, stock.c.store)

sales_daily = sa.Table(
    "sales_daily",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("qty", Big, nullable=False),
    sa.Column("gross_fen", Big, nullable=False),
    sa.Column("tax_fen", Big, nullable=False),
    sa.Column("cost_fen", Big, nullable=False),
)
sa.Index("sales_daily_by_day", sales_daily.c.day, sales_daily.c.store)

gl_period = sa.Table(
    "gl_period",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),  # YYYY-MM of the voucher's business date
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("debit_fen", Big, nullable=False),
    sa.Column("credit_fen", Big, nullable=False),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_en", sa.String(200)),
    sa.Column("category", sa.String(64)),
    sa.Column("category_name", sa.String(200)),
    sa.Column("category_name_en", sa.String(200)),
    sa.Column("storage_class", sa.String(16)),
    sa.Column("base_unit", sa.String(16)),
    sa.Column("shelf_life_days", sa.Integer),
)

lots = sa.Table(
    "lots",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("lot", sa.String(64), primary_key=True),
    sa.Column("expiry", sa.String(10)),
)

item_activity = sa.Table(
    "item_activity",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("last_outbound_date", sa.String(10), nullable=False),
)

compliance_suppliers = sa.Table(
    "compliance_suppliers",
    metadata,
    sa.Column("store", sa.String(64), primary_key=True),
    sa.Column("supplier", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("frozen", sa.Integer, nullable=False),
    sa.Column("freeze_reason", sa.Text),
    sa.Column("frozen_at", sa.String(40)),
    sa.Column("papers", sa.Text, nullable=False),  # JSON list as the box sent it
    sa.Column("next_expiry", sa.String(10)),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

CORE_TABLES = (
    companies,
    stores,
    store_keys,
    hq_tokens,
    batches,
    sync_state,
    rejections,
    documents,
    stock,
    sales_daily,
    gl_period,
    items,
    lots,
    item_activity,
    compliance_suppliers,
)
