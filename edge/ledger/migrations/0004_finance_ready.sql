-- Finance (issue 3): a chart with parents and leaves, tax-trusted vouchers, versioned voucher rule tables.
ALTER TABLE accounts ADD COLUMN parent TEXT;
ALTER TABLE accounts ADD COLUMN leaf INTEGER NOT NULL DEFAULT 1;
ALTER TABLE vouchers ADD COLUMN tax_trusted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX vouchers_by_date ON vouchers(date);

-- Each voucher rule table a company has installed; a posting uses the one in effect on its business date.
CREATE TABLE voucher_rule_versions (
    version         TEXT PRIMARY KEY,
    effective_from  TEXT NOT NULL UNIQUE,
    chart           TEXT NOT NULL,
    body            TEXT NOT NULL,   -- the table as JSON
    installed_at    TEXT NOT NULL,
    installed_by    TEXT NOT NULL
);
CREATE TRIGGER voucher_rule_versions_append_only_update BEFORE UPDATE ON voucher_rule_versions
BEGIN SELECT RAISE(ABORT, 'voucher rule versions are never changed; install a new version'); END;
CREATE TRIGGER voucher_rule_versions_append_only_delete BEFORE DELETE ON voucher_rule_versions
BEGIN SELECT RAISE(ABORT, 'voucher rule versions are never deleted'); END;
