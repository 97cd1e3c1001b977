-- P planner: item suppliers and planning parameters, sales by series and day, imported history, plan runs,
-- suggestions (docs/replenishment.md). Quantities are integer base units unless named in purchase units.

-- Who we buy an item from and how (商品供应商): the purchase unit and its size, minimum order, planning parameters.
CREATE TABLE item_suppliers (
    sku             TEXT NOT NULL REFERENCES items(sku),
    supplier        TEXT NOT NULL REFERENCES suppliers(id),
    unit            TEXT NOT NULL,                        -- purchase unit (箱), one of the item's units
    pack            INTEGER NOT NULL CHECK (pack >= 1),   -- base units per purchase unit
    moq             INTEGER NOT NULL DEFAULT 0 CHECK (moq >= 0 AND moq <= 100000),  -- in purchase units
    lead_time_days  REAL NOT NULL DEFAULT 3 CHECK (lead_time_days >= 0 AND lead_time_days <= 365),
    review_days     REAL NOT NULL DEFAULT 1 CHECK (review_days > 0 AND review_days <= 365),
    service_level   REAL NOT NULL DEFAULT 0.95 CHECK (service_level >= 0.5 AND service_level <= 0.999),
    is_primary      INTEGER NOT NULL DEFAULT 1 CHECK (is_primary IN (0, 1)),
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    updated_at      TEXT NOT NULL,
    updated_by      TEXT NOT NULL,
    PRIMARY KEY (sku, supplier)
);
-- The plan orders from the one active primary supplier of an item.
CREATE UNIQUE INDEX item_suppliers_one_primary ON item_suppliers(sku) WHERE is_primary = 1 AND active = 1;
CREATE INDEX item_suppliers_by_supplier ON item_suppliers(supplier);

-- A demand series: one item at one location, numbered so that the daily tables are small integer keys.
CREATE TABLE plan_series (
    id        INTEGER PRIMARY KEY,
    sku       TEXT NOT NULL,
    location  TEXT NOT NULL,
    UNIQUE (sku, location)
);

-- Net sales (sales minus customer returns, reversals undone) per series and business day (days since 1970-01-01),
-- kept by the trigger below in the posting's own transaction.
CREATE TABLE sales_daily (
    series  INTEGER NOT NULL,
    day     INTEGER NOT NULL,
    qty     INTEGER NOT NULL,
    PRIMARY KEY (series, day)
) WITHOUT ROWID;
CREATE INDEX sales_daily_by_day ON sales_daily(day, series, qty);  -- covering: the plan reads a window of days

-- The same per UTC hour (hours since 1970-01-01), for the hourly profile of fast movers and sales spikes;
-- the planner prunes hours older than a few weeks.
CREATE TABLE sales_hourly (
    series  INTEGER NOT NULL,
    hour    INTEGER NOT NULL,
    qty     INTEGER NOT NULL,
    PRIMARY KEY (series, hour)
) WITHOUT ROWID;
CREATE INDEX sales_hourly_by_hour ON sales_hourly(hour);

CREATE TRIGGER stock_moves_plan_sales AFTER INSERT ON stock_moves
WHEN (SELECT type FROM documents WHERE id = NEW.document_id) IN ('sale', 'customer_return')
BEGIN
    INSERT OR IGNORE INTO plan_series (sku, location) VALUES (NEW.sku, NEW.location);
    INSERT INTO sales_daily (series, day, qty)
    SELECT s.id, CAST(julianday(d.business_date) - 2440587.5 AS INTEGER), -NEW.qty
    FROM plan_series s, documents d WHERE s.sku = NEW.sku AND s.location = NEW.location AND d.id = NEW.document_id
    ON CONFLICT (series, day) DO UPDATE SET qty = qty + excluded.qty;
    INSERT INTO sales_hourly (series, hour, qty)
    SELECT s.id, CAST(strftime('%s', NEW.ts) AS INTEGER) / 3600, -NEW.qty
    FROM plan_series s WHERE s.sku = NEW.sku AND s.location = NEW.location
    ON CONFLICT (series, hour) DO UPDATE SET qty = qty + excluded.qty;
END;

-- A reversed sale or return did not happen: take it back on the day of the original.
CREATE TRIGGER stock_moves_plan_sales_reversed AFTER INSERT ON stock_moves
WHEN (SELECT o.type FROM documents r JOIN documents o ON o.id = r.reverses_id WHERE r.id = NEW.document_id)
     IN ('sale', 'customer_return')
BEGIN
    INSERT OR IGNORE INTO plan_series (sku, location) VALUES (NEW.sku, NEW.location);
    INSERT INTO sales_daily (series, day, qty)
    SELECT s.id, CAST(julianday(o.business_date) - 2440587.5 AS INTEGER), -NEW.qty
    FROM plan_series s, documents r JOIN documents o ON o.id = r.reverses_id
    WHERE s.sku = NEW.sku AND s.location = NEW.location AND r.id = NEW.document_id
    ON CONFLICT (series, day) DO UPDATE SET qty = qty + excluded.qty;
END;

-- Backfill from the moves already posted.
INSERT OR IGNORE INTO plan_series (sku, location)
SELECT DISTINCT m.sku, m.location FROM stock_moves m JOIN documents d ON d.id = m.document_id
LEFT JOIN documents o ON o.id = d.reverses_id
WHERE d.type IN ('sale', 'customer_return') OR o.type IN ('sale', 'customer_return');

INSERT INTO sales_daily (series, day, qty)
SELECT s.id, CAST(julianday(COALESCE(o.business_date, d.business_date)) - 2440587.5 AS INTEGER) AS day,
       -SUM(m.qty)
FROM stock_moves m JOIN documents d ON d.id = m.document_id
LEFT JOIN documents o ON o.id = d.reverses_id
JOIN plan_series s ON s.sku = m.sku AND s.location = m.location
WHERE d.type IN ('sale', 'customer_return') OR o.type IN ('sale', 'customer_return')
GROUP BY s.id, day;

INSERT INTO sales_hourly (series, hour, qty)
SELECT s.id, CAST(strftime('%s', m.ts) AS INTEGER) / 3600 AS hour, -SUM(m.qty)
FROM stock_moves m JOIN documents d ON d.id = m.document_id
JOIN plan_series s ON s.sku = m.sku AND s.location = m.location
WHERE d.type IN ('sale', 'customer_return')
GROUP BY s.id, hour;

-- Daily sales from a previous system (历史销量导入), kept apart from the ledger's and summed with them when read.
CREATE TABLE sales_history (
    series  INTEGER NOT NULL,
    day     INTEGER NOT NULL,
    qty     INTEGER NOT NULL,
    PRIMARY KEY (series, day)
) WITHOUT ROWID;
CREATE INDEX sales_history_by_day ON sales_history(day, series, qty);

CREATE TABLE history_imports (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,          -- file name as given
    sha256       TEXT NOT NULL,
    rows         INTEGER NOT NULL,
    first_day    TEXT,
    last_day     TEXT,
    imported_at  TEXT NOT NULL,
    imported_by  TEXT NOT NULL,
    command_key  TEXT UNIQUE             -- the request's idempotency key (API), NULL for the CLI and the demo
);

-- Each run of the plan: what started it, how long it took, what it wrote.
CREATE TABLE plan_runs (
    id           INTEGER PRIMARY KEY,
    trigger      TEXT NOT NULL,          -- schedule, start, manual, api, cli, sale_spike, supplier_delay, ...
    partial      INTEGER NOT NULL DEFAULT 0,   -- 1 when only some SKUs were planned
    business_date TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    series       INTEGER NOT NULL,       -- SKU-locations planned
    rows         INTEGER NOT NULL,       -- suggestions written
    superseded   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    methods      TEXT NOT NULL,          -- JSON: forecast method -> series
    errors       TEXT NOT NULL           -- JSON list of {code, message, message_en}
);

-- Reorder suggestions (补货建议). A new run supersedes the open suggestion of the same SKU-location; approved and
-- rejected ones stay as history.
CREATE TABLE suggestions (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES plan_runs(id),
    sku             TEXT NOT NULL REFERENCES items(sku),
    location        TEXT NOT NULL,
    supplier        TEXT NOT NULL REFERENCES suppliers(id),
    qty             INTEGER NOT NULL CHECK (qty >= 0),    -- purchase units
    unit            TEXT NOT NULL,
    pack            INTEGER NOT NULL CHECK (pack >= 1),
    base_qty        INTEGER NOT NULL,
    order_by        TEXT NOT NULL,       -- business date by which to order
    explanation     TEXT NOT NULL,
    explanation_en  TEXT NOT NULL,
    inputs          TEXT NOT NULL,       -- JSON: the numbers used
    state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'approved', 'rejected', 'superseded')),
    created_at      TEXT NOT NULL,
    decided_by      TEXT,
    decided_at      TEXT,
    reject_reason   TEXT,
    approved_qty    INTEGER,
    po_id           INTEGER REFERENCES documents(id)
);
CREATE UNIQUE INDEX suggestions_one_open ON suggestions(sku, location) WHERE state = 'open';
CREATE INDEX suggestions_by_state ON suggestions(state, id);
CREATE INDEX suggestions_by_run ON suggestions(run_id);
CREATE INDEX suggestions_by_decided_at ON suggestions(decided_at) WHERE decided_at IS NOT NULL;
CREATE INDEX suggestions_superseded_by_created_at ON suggestions(created_at) WHERE state = 'superseded';

-- Approvals and rejections by idempotency key: a retry answers the first result.
CREATE TABLE suggestion_requests (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    result       TEXT NOT NULL,
    ts           TEXT NOT NULL
);
