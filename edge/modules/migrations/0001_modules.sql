-- 0001_modules: scenario modules (场景模块, issue 8, docs/modules.md): installed versions, the one in force and its
-- state, what each module decided and how that turned out, failures, KPI reports. See edge/modules/store.py.

-- Every version of a module installed on this box. Its files live in `directory` and never change; `previous` is
-- the version in force when it was installed (what a rollback returns to; 0 = none). `state_before` is the state
-- the previous version had when this one replaced it, so a rollback restores it exactly.
CREATE TABLE module_installs (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    version       INTEGER NOT NULL CHECK (version >= 1),
    previous      INTEGER NOT NULL DEFAULT 0,
    state_before  TEXT,
    source        TEXT NOT NULL CHECK (source IN ('package', 'local', 'shipped')),
    directory     TEXT NOT NULL,
    manifest      TEXT NOT NULL,          -- JSON of the checked manifest
    sha256        TEXT NOT NULL,          -- of the module's files (path and content), to tell a re-install
    installed_at  TEXT NOT NULL,
    installed_by  TEXT NOT NULL,
    UNIQUE (name, version)
);

-- One row per module: the version in force (0 after removal or a rollback past the first) and its state.
-- enabled: its worker runs and gets events; disabled: by a user; failed: the host stopped it (it raised, timed out,
-- died or ran out of memory; `reason` says which); removed.
CREATE TABLE modules (
    name          TEXT PRIMARY KEY,
    version       INTEGER NOT NULL DEFAULT 0,
    install_id    INTEGER REFERENCES module_installs(id),
    state         TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'failed', 'removed')),
    reason        TEXT,
    since         TEXT NOT NULL,
    changed_by    TEXT NOT NULL,
    CHECK ((state = 'removed') = (version = 0))
);

-- What happened to modules, in order (installed, enabled, disabled, failed, rolled_back, removed, reinstalled).
CREATE TABLE module_history (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    name          TEXT NOT NULL,
    action        TEXT NOT NULL,
    from_version  INTEGER,
    to_version    INTEGER,
    reason        TEXT,
    actor         TEXT NOT NULL
);
CREATE INDEX module_history_by_name ON module_history(name, id);

-- Decisions a module made (a prediction it can be measured on): `predicted` is what it expected (JSON), check_on
-- the business day from which the judge may tell whether it was right; outcome 1 right, 0 wrong, NULL not known yet.
CREATE TABLE module_decisions (
    id            INTEGER PRIMARY KEY,
    module        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    key           TEXT NOT NULL,
    subject       TEXT,
    predicted     TEXT NOT NULL DEFAULT 'null',
    check_on      TEXT NOT NULL,          -- YYYY-MM-DD
    event_key     TEXT,
    created_at    TEXT NOT NULL,
    outcome       INTEGER CHECK (outcome IN (0, 1)),
    judged_at     TEXT,
    UNIQUE (module, version, key)
);
CREATE INDEX module_decisions_due ON module_decisions(module, version, check_on) WHERE judged_at IS NULL;
CREATE INDEX module_decisions_judged ON module_decisions(module, version, judged_at) WHERE judged_at IS NOT NULL;

-- Calls that failed (raised, timeout, died, memory, refused proposals) and events dropped on a full queue.
CREATE TABLE module_failures (
    id            INTEGER PRIMARY KEY,
    module        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('raised', 'timeout', 'died', 'memory', 'start', 'proposal')),
    message       TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX module_failures_by_module ON module_failures(module, id);

-- KPI snapshots taken after each judge pass; reported upstream (POST /api/v1/sync/modules/kpis) once.
CREATE TABLE module_kpi_reports (
    id                   INTEGER PRIMARY KEY,
    module               TEXT NOT NULL,
    version              INTEGER NOT NULL,
    judged               INTEGER NOT NULL,
    right                INTEGER NOT NULL,
    wrong                INTEGER NOT NULL,
    precision            REAL,
    false_positive_rate  REAL,
    window               INTEGER NOT NULL,
    at                   TEXT NOT NULL,
    reported_at          TEXT
);
CREATE INDEX module_kpi_reports_unreported ON module_kpi_reports(id) WHERE reported_at IS NULL;
