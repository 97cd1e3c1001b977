-- Indexes named after the queries of `ledger verify` (one outbox row and one audit row per document).
CREATE INDEX outbox_by_document ON outbox(document_id);
CREATE INDEX audit_by_object ON audit(object);
