-- HQ packages (issue 6, docs/packages.md): signed packages received, installed, rolled back.
-- Every version this box unpacked and put in force at least once; `previous` is the version that was in force when
-- it was installed (what a rollback returns to; 0 = none).
CREATE TABLE package_installs (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
    previous       INTEGER NOT NULL DEFAULT 0,
    package_sha256 TEXT NOT NULL,
    remote_id      INTEGER,                      -- the aggregator's package id (NULL: installed from a file)
    manifest       TEXT NOT NULL,                -- the signed manifest.json as received
    installed_at   TEXT NOT NULL,
    installed_by   TEXT NOT NULL
);
CREATE INDEX package_installs_by_package ON package_installs(kind, name, version);

-- The version in force per kind and name (the `current` symlink follows this row; a crash between the commit and
-- the symlink switch is repaired by reconcile()).
CREATE TABLE package_current (
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,                -- 0: none in force (rolled back past the first)
    install_id  INTEGER REFERENCES package_installs(id),
    since       TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- What happened, in order: installed, failed (with the reason), rolled_back, refused; reported upstream once.
CREATE TABLE package_history (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('installed', 'failed', 'rolled_back')),
    from_version  INTEGER,
    to_version    INTEGER,
    code          TEXT,
    reason        TEXT,
    actor         TEXT NOT NULL,
    source        TEXT NOT NULL,                 -- sync, file, api, cli
    remote_id     INTEGER,
    package_sha256 TEXT,
    reported_at   TEXT
);
CREATE INDEX package_history_unreported ON package_history(id) WHERE reported_at IS NULL AND remote_id IS NOT NULL;

-- Retail prices a price list changed: the price before it, so a rollback restores exactly what it changed.
CREATE TABLE package_price_changes (
    install_id     INTEGER NOT NULL REFERENCES package_installs(id),
    sku            TEXT NOT NULL,
    old_price_fen  INTEGER NOT NULL,
    new_price_fen  INTEGER NOT NULL,
    PRIMARY KEY (install_id, sku)
);
