-- 0001_rules: low-code business rules (业务规则, issue 8, docs/rules.md): rules and their immutable versions, review
-- trail, local overrides, rule packs, firings and what each action did (notifications, e-mails, tickets, holds,
-- planning parameter changes, return flows, drafts). See edge/rules/store.py, governance.py, packs.py, actions.py.

-- One row per rule id. `state` is the rule's governance state as a whole: active while a version is in force
-- (`active_version`), even when a newer draft waits for review; `latest_version` is the newest version written.
-- `origin` says where the rule came from: local (written on this box), pack:<name>@<version> (a signed HQ rule
-- pack), builtin:<pack>@<version> (a pack shipped with the box).
CREATE TABLE rules (
    id              TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    state           TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'in_review', 'active', 'retired')),
    active_version  INTEGER,
    latest_version  INTEGER NOT NULL CHECK (latest_version >= 1),
    origin          TEXT NOT NULL DEFAULT 'local',
    pack            TEXT,                 -- the pack's name when origin is pack:/builtin:, else NULL
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CHECK ((state = 'active') = (active_version IS NOT NULL)),
    CHECK (active_version IS NULL OR active_version <= latest_version)
);
CREATE INDEX rules_by_state ON rules(state);
CREATE INDEX rules_by_pack ON rules(pack) WHERE pack IS NOT NULL;

-- Every version of every rule. The document (canonical JSON of the validated rule) never changes once the version
-- left `draft`; editing a reviewed rule writes a new version. A version's state: draft (editable), in_review
-- (frozen, waits for `reviewer`), active (in force), superseded (replaced by a newer approved version), retired,
-- or withdrawn (a pack upgrade or removal took it away).
CREATE TABLE rule_versions (
    rule_id         TEXT NOT NULL REFERENCES rules(id),
    version         INTEGER NOT NULL CHECK (version >= 1),
    state           TEXT NOT NULL DEFAULT 'draft'
                    CHECK (state IN ('draft', 'in_review', 'active', 'superseded', 'retired', 'withdrawn')),
    document        TEXT NOT NULL,        -- JSON of the rule as validated
    sha256          TEXT NOT NULL CHECK (length(sha256) = 64),
    trigger_kind    TEXT NOT NULL CHECK (trigger_kind IN ('ledger', 'bus', 'alert', 'schedule', 'signal')),
    trigger_key     TEXT NOT NULL,        -- doc_type, event, alert, cron or signal name: what the runtime indexes
    name            TEXT NOT NULL,
    name_en         TEXT NOT NULL,
    owner           TEXT,
    origin          TEXT NOT NULL DEFAULT 'local',
    author          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    reviewer        TEXT,                 -- named at submit
    submitted_by    TEXT,
    submitted_at    TEXT,
    approved_by     TEXT,
    approved_at     TEXT,
    rejected_by     TEXT,                 -- the last rejection (the version went back to draft)
    rejected_at     TEXT,
    reject_reason   TEXT,
    retired_by      TEXT,
    retired_at      TEXT,
    PRIMARY KEY (rule_id, version),
    CHECK (state NOT IN ('in_review', 'active', 'superseded') OR submitted_at IS NOT NULL OR origin <> 'local')
);
CREATE UNIQUE INDEX rule_versions_one_active ON rule_versions(rule_id) WHERE state = 'active';
CREATE INDEX rule_versions_by_trigger ON rule_versions(trigger_kind, trigger_key) WHERE state = 'active';
CREATE INDEX rule_versions_in_review ON rule_versions(reviewer) WHERE state = 'in_review';

-- The governance trail: every transition of a rule version, who did it and why. A pack install records the
-- package signature as the review (HQ reviewed the rules it signed).
CREATE TABLE rule_reviews (
    id          INTEGER PRIMARY KEY,
    rule_id     TEXT NOT NULL REFERENCES rules(id),
    version     INTEGER NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('created', 'edited', 'submitted', 'approved', 'rejected', 'retired',
                                                'superseded', 'pack_installed', 'pack_withdrawn', 'overridden')),
    from_state  TEXT,
    to_state    TEXT,
    actor       TEXT NOT NULL,
    reviewer    TEXT,
    reason      TEXT,
    signature   TEXT,                     -- a pack's signature (base64) when a pack put the version in force
    at          TEXT NOT NULL
);
CREATE INDEX rule_reviews_by_rule ON rule_reviews(rule_id, version, id);

-- Local overrides the store sets on a rule (a pack's or its own): enabled and params. They survive pack upgrades
-- and rollbacks; a params override names only params the rule declares.
CREATE TABLE rule_overrides (
    rule_id     TEXT PRIMARY KEY REFERENCES rules(id),
    enabled     INTEGER CHECK (enabled IS NULL OR enabled IN (0, 1)),   -- NULL: as the rule says
    params      TEXT NOT NULL DEFAULT '{}',                             -- JSON object of overridden params
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Rule packs this box holds: one row per (origin kind, name, version) ever put in force, with the rule documents
-- it carried so that a rollback restores that version's rules exactly. `in_force` marks the version in force.
CREATE TABLE rule_packs (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    source       TEXT NOT NULL CHECK (source IN ('package', 'builtin')),
    description  TEXT,
    rules        TEXT NOT NULL,           -- JSON list of the rule documents as shipped
    rule_ids     TEXT NOT NULL,           -- JSON list of the rule ids, in pack order
    state        TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draft')),  -- state the rules arrive in
    signature    TEXT,                    -- the package signature (NULL for builtin packs)
    sha256       TEXT NOT NULL,           -- of the canonical rules JSON
    install_id   INTEGER,                 -- package_installs.id for signed packages
    in_force     INTEGER NOT NULL DEFAULT 0 CHECK (in_force IN (0, 1)),
    installed_by TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    removed_at   TEXT,
    UNIQUE (source, name, version)
);
CREATE UNIQUE INDEX rule_packs_one_in_force ON rule_packs(source, name) WHERE in_force = 1;

-- One row per rule (or module) firing: an event that matched. Replaying the same event never acts twice:
-- (rule_id, version, event_key) is unique. rule_id holds module:<name> for a scenario module's proposals.
CREATE TABLE rule_firings (
    id            INTEGER PRIMARY KEY,
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    event_key     TEXT NOT NULL,
    trigger_kind  TEXT NOT NULL,
    subject       TEXT,                   -- what it was about (a supplier id, a document no, ...)
    facts         TEXT NOT NULL DEFAULT '{}',   -- JSON of the facts the condition saw
    state         TEXT NOT NULL DEFAULT 'fired' CHECK (state IN ('fired', 'done', 'partial', 'failed')),
    error         TEXT,
    depth         INTEGER NOT NULL DEFAULT 0,   -- signal chain depth (emit_signal)
    fired_at      TEXT NOT NULL,
    finished_at   TEXT
);
CREATE UNIQUE INDEX rule_firings_once ON rule_firings(rule_id, version, event_key);
CREATE INDEX rule_firings_by_rule ON rule_firings(rule_id, id);
CREATE INDEX rule_firings_by_time ON rule_firings(fired_at);

-- One row per action of a firing, in the rule's order. object_kind/object_id are the lineage: what it acted on
-- (document, purchase_order, invoice, item_supplier, ticket, hold, notification, email, return_flow, draft, signal).
CREATE TABLE rule_actions (
    id            INTEGER PRIMARY KEY,
    firing_id     INTEGER NOT NULL REFERENCES rule_firings(id),
    action_index  INTEGER NOT NULL CHECK (action_index >= 0),
    action        TEXT NOT NULL,
    spec          TEXT NOT NULL,          -- JSON of the action as the rule wrote it
    state         TEXT NOT NULL DEFAULT 'done' CHECK (state IN ('done', 'queued', 'failed', 'skipped')),
    result        TEXT NOT NULL DEFAULT '{}',   -- JSON
    object_kind   TEXT,
    object_id     TEXT,
    error         TEXT,
    at            TEXT NOT NULL,
    UNIQUE (firing_id, action_index)
);
CREATE INDEX rule_actions_by_object ON rule_actions(object_kind, object_id);

-- Notifications to a role or team (outbox): delivered on MQTT storebox/<store>/alert/rule; published_at is set
-- when it went out. Failures are kept with the attempt count.
CREATE TABLE rule_notifications (
    id            INTEGER PRIMARY KEY,
    firing_id     INTEGER REFERENCES rule_firings(id),
    action_id     INTEGER REFERENCES rule_actions(id),
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    role          TEXT NOT NULL,
    message       TEXT NOT NULL,
    message_en    TEXT NOT NULL,
    subject       TEXT,
    created_at    TEXT NOT NULL,
    published_at  TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX rule_notifications_unpublished ON rule_notifications(id) WHERE published_at IS NULL;
CREATE INDEX rule_notifications_by_role ON rule_notifications(role, id);

-- E-mails (outbox): sent through the configured SMTP server with retries; a failure is kept, visible.
CREATE TABLE rule_emails (
    id               INTEGER PRIMARY KEY,
    firing_id        INTEGER REFERENCES rule_firings(id),
    action_id        INTEGER REFERENCES rule_actions(id),
    rule_id          TEXT NOT NULL,
    version          INTEGER NOT NULL,
    recipients       TEXT NOT NULL,       -- JSON list of addresses (role:<team> already resolved)
    subject          TEXT NOT NULL,
    subject_en       TEXT NOT NULL,
    body             TEXT NOT NULL,
    body_en          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT,
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX rule_emails_pending ON rule_emails(next_attempt_at, id) WHERE state = 'queued';

-- Tickets a rule opened for a team's queue (工单); closed by a rules:act holder with a resolution.
CREATE TABLE rule_tickets (
    id            INTEGER PRIMARY KEY,
    queue         TEXT NOT NULL,
    title         TEXT NOT NULL,
    title_en      TEXT NOT NULL,
    subject_kind  TEXT,                   -- e.g. supplier, document, item
    subject       TEXT,
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    firing_id     INTEGER REFERENCES rule_firings(id),
    action_id     INTEGER REFERENCES rule_actions(id),
    detail        TEXT NOT NULL DEFAULT '{}',   -- JSON
    state         TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    opened_at     TEXT NOT NULL,
    closed_by     TEXT,
    closed_at     TEXT,
    resolution    TEXT,
    CHECK ((state = 'closed') = (closed_by IS NOT NULL AND closed_at IS NOT NULL))
);
CREATE INDEX rule_tickets_by_queue ON rule_tickets(state, queue, id);
CREATE INDEX rule_tickets_by_subject ON rule_tickets(subject_kind, subject);

-- Holds on a document (暂挂): while open, finance refuses approving the held purchase order or accepting, approving,
-- posting the held invoice. Released by a rules:act holder who is not the document's author, with a note.
CREATE TABLE holds (
    id            INTEGER PRIMARY KEY,
    object_kind   TEXT NOT NULL CHECK (object_kind IN ('purchase_order', 'invoice', 'document')),
    object_id     INTEGER NOT NULL,
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    firing_id     INTEGER REFERENCES rule_firings(id),
    action_id     INTEGER REFERENCES rule_actions(id),
    reason        TEXT NOT NULL,
    reason_en     TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'released')),
    opened_at     TEXT NOT NULL,
    released_by   TEXT,
    released_at   TEXT,
    note          TEXT,
    CHECK ((state = 'released') = (released_by IS NOT NULL AND released_at IS NOT NULL))
);
CREATE INDEX holds_open ON holds(object_kind, object_id) WHERE state = 'open';
CREATE INDEX holds_by_state ON holds(state, id);

-- Planning parameters a rule changed on item_suppliers rows (within the rule's bounds): the value before and after,
-- so that undoing the change (a firing's rollback) restores exactly. restored_at is set when it was undone.
CREATE TABLE parameter_changes (
    id            INTEGER PRIMARY KEY,
    firing_id     INTEGER REFERENCES rule_firings(id),
    action_id     INTEGER REFERENCES rule_actions(id),
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    sku           TEXT NOT NULL,
    supplier      TEXT NOT NULL,
    parameter     TEXT NOT NULL CHECK (parameter IN ('service_level', 'lead_time_days', 'review_days')),
    before        REAL NOT NULL,
    after         REAL NOT NULL,
    at            TEXT NOT NULL,
    restored_by   TEXT,
    restored_at   TEXT
);
CREATE INDEX parameter_changes_by_row ON parameter_changes(sku, supplier, parameter, id);
CREATE INDEX parameter_changes_by_rule ON parameter_changes(rule_id, version);

-- Return lines a rule routed to a handling channel (退货流向): supplier_claim, category_team, logistics, ...
CREATE TABLE return_flows (
    id            INTEGER PRIMARY KEY,
    document_id   INTEGER NOT NULL REFERENCES documents(id),
    line_no       INTEGER NOT NULL,
    channel       TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    firing_id     INTEGER REFERENCES rule_firings(id),
    action_id     INTEGER REFERENCES rule_actions(id),
    created_at    TEXT NOT NULL,
    UNIQUE (document_id, line_no, channel)
);
CREATE INDEX return_flows_by_channel ON return_flows(channel, id);

-- Drafts a rule proposed (a purchase order, a presale, a transfer request): the store confirms or dismisses them
-- on the page; a draft never posts stock by itself.
CREATE TABLE rule_drafts (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,          -- purchase_order, presale, transfer_request, markdown, ...
    payload       TEXT NOT NULL,          -- JSON of the proposed document
    subject       TEXT,
    rule_id       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    firing_id     INTEGER REFERENCES rule_firings(id),
    action_id     INTEGER REFERENCES rule_actions(id),
    state         TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'confirmed', 'dismissed')),
    created_at    TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    TEXT,
    document_id   INTEGER,                -- the document created when confirmed
    CHECK ((state = 'open') = (decided_by IS NULL))
);
CREATE INDEX rule_drafts_by_state ON rule_drafts(state, kind, id);
