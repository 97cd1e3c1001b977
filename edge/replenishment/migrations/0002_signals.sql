-- S signals (docs/signals.md): outside signals pushed to the box (weather, promotions, online channel orders,
-- supplier delays, trending scores, search bounce and cart abandonment), lead-time history imported from a
-- previous system, and customer-return spikes with their alerts. Every push is one batch, kept once per
-- idempotency key; the records of a batch are written in the same transaction or not at all.

CREATE TABLE signal_batches (
    id           INTEGER PRIMARY KEY,      -- the cursor of touched_since: a later push has a larger id
    kind         TEXT NOT NULL,
    command_key  TEXT NOT NULL UNIQUE,
    fingerprint  TEXT NOT NULL,
    records      INTEGER NOT NULL,
    accepted     INTEGER NOT NULL,
    duplicates   INTEGER NOT NULL DEFAULT 0,
    source       TEXT NOT NULL CHECK (source IN ('api', 'file')),
    received_at  TEXT NOT NULL,
    actor        TEXT NOT NULL
);

-- Forecast per day; the newest push wins per (location, date). location '' = the whole store.
CREATE TABLE signal_weather (
    id          INTEGER PRIMARY KEY,
    batch_id    INTEGER NOT NULL REFERENCES signal_batches(id),
    location    TEXT NOT NULL DEFAULT '',
    date        TEXT NOT NULL,
    temp_max_c  REAL NOT NULL,
    temp_min_c  REAL NOT NULL,
    rain_mm     REAL NOT NULL
);
CREATE INDEX signal_weather_by_date ON signal_weather(date, location, id);

-- A promotion of one SKU or of a whole category; discount is the fraction off (0..1), from the promo price
-- when the price was given. The newest push wins per (sku or category, start); cancelled = 1 withdraws it.
CREATE TABLE signal_promotions (
    id               INTEGER PRIMARY KEY,
    batch_id         INTEGER NOT NULL REFERENCES signal_batches(id),
    sku              TEXT REFERENCES items(sku),
    category         TEXT REFERENCES categories(code),
    start_date       TEXT NOT NULL,
    end_date         TEXT NOT NULL,
    discount         REAL NOT NULL CHECK (discount >= 0 AND discount <= 1),
    promo_price_fen  INTEGER,
    kind             TEXT NOT NULL,
    note             TEXT,
    cancelled        INTEGER NOT NULL DEFAULT 0 CHECK (cancelled IN (0, 1)),
    CHECK ((sku IS NULL) <> (category IS NULL))
);
CREATE INDEX signal_promotions_by_end ON signal_promotions(end_date);
CREATE INDEX signal_promotions_by_target ON signal_promotions(sku, category, start_date, id);

-- Marketplace orders pushed by a connector, once per (channel, order_id).
CREATE TABLE signal_online_orders (
    id           INTEGER PRIMARY KEY,
    batch_id     INTEGER NOT NULL REFERENCES signal_batches(id),
    channel      TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    ts           TEXT NOT NULL,
    day          TEXT NOT NULL,             -- business date of ts
    fulfilment   TEXT NOT NULL CHECK (fulfilment IN ('channel', 'pos')),
    UNIQUE (channel, order_id)
);
CREATE TABLE signal_online_lines (
    order_row  INTEGER NOT NULL REFERENCES signal_online_orders(id),
    sku        TEXT NOT NULL REFERENCES items(sku),
    qty        INTEGER NOT NULL CHECK (qty > 0),
    day        TEXT NOT NULL,
    counted    INTEGER NOT NULL,           -- 1 when fulfilment = 'channel' (extra demand), 0 for 'pos'
    PRIMARY KEY (order_row, sku)
);
CREATE INDEX signal_online_lines_by_day ON signal_online_lines(day, sku);

-- Shipping delay notices; the newest push wins per (supplier, from_date); delay_days 0 lifts a notice.
CREATE TABLE signal_supplier_delays (
    id          INTEGER PRIMARY KEY,
    batch_id    INTEGER NOT NULL REFERENCES signal_batches(id),
    supplier    TEXT NOT NULL REFERENCES suppliers(id),
    delay_days  INTEGER NOT NULL CHECK (delay_days BETWEEN 0 AND 90),
    from_date   TEXT NOT NULL,
    until_date  TEXT,
    reason      TEXT
);
CREATE INDEX signal_supplier_delays_by_supplier ON signal_supplier_delays(supplier, from_date, id);

-- Lead indicators: trend (score 0..100), search_bounce and cart_abandonment (rate 0..1), per SKU or category.
-- A trend pushed for a keyword is stored once per SKU the keyword names (keyword kept for the record).
CREATE TABLE signal_indicators (
    id        INTEGER PRIMARY KEY,
    batch_id  INTEGER NOT NULL REFERENCES signal_batches(id),
    kind      TEXT NOT NULL CHECK (kind IN ('trend', 'search_bounce', 'cart_abandonment')),
    sku       TEXT REFERENCES items(sku),
    category  TEXT REFERENCES categories(code),
    keyword   TEXT,
    date      TEXT NOT NULL,
    value     REAL NOT NULL,
    baseline  REAL,
    CHECK ((sku IS NULL) <> (category IS NULL))
);
CREATE INDEX signal_indicators_by_date ON signal_indicators(kind, date);

-- Lead times from a previous system (PO date to receipt date), imported from CSV.
CREATE TABLE lead_time_history (
    id            INTEGER PRIMARY KEY,
    supplier      TEXT NOT NULL REFERENCES suppliers(id),
    po_ref        TEXT NOT NULL,
    ordered_on    TEXT NOT NULL,
    received_on   TEXT NOT NULL,
    qty           INTEGER NOT NULL DEFAULT 1 CHECK (qty > 0),
    imported_at   TEXT NOT NULL,
    command_key   TEXT NOT NULL,
    UNIQUE (supplier, po_ref, received_on)
);
CREATE INDEX lead_time_history_by_supplier ON lead_time_history(supplier, ordered_on);

-- Customer-return spikes: one row per spike (raised once while it lasts), published on MQTT alert/returns.
CREATE TABLE return_spikes (
    id            INTEGER PRIMARY KEY,
    scope         TEXT NOT NULL CHECK (scope IN ('item', 'supplier')),
    subject       TEXT NOT NULL,               -- the SKU or the supplier id
    reason        TEXT NOT NULL,
    detected_on   TEXT NOT NULL,
    recent_qty    INTEGER NOT NULL,
    recent_count  INTEGER NOT NULL,
    baseline_qty  INTEGER NOT NULL,
    ratio         REAL NOT NULL,
    sold_qty      INTEGER NOT NULL,
    skus          TEXT NOT NULL,               -- JSON list of the SKUs it touches
    ended_on      TEXT,
    published_at  TEXT
);
CREATE INDEX return_spikes_open ON return_spikes(scope, subject, reason, ended_on);
