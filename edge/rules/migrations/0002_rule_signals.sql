-- 0002_rule_signals: what the rules' signal producers (edge/rules/signals.py) have already seen, so that each
-- signal is raised once: the last lead-time estimate per supplier, and watermarks over invoices and paper alerts.

-- The lead time a supplier's last `supplier.lead_time_changed` signal (or the first look) was computed from.
CREATE TABLE rule_lead_time_marks (
    supplier    TEXT PRIMARY KEY,
    days        REAL NOT NULL,
    deliveries  INTEGER NOT NULL,
    at          TEXT NOT NULL
);

-- Watermarks of the producers: name -> the last id seen (invoices.id, compliance_alerts.id).
CREATE TABLE rule_signal_marks (
    name        TEXT PRIMARY KEY,
    last_id     INTEGER NOT NULL,
    at          TEXT NOT NULL
);
