-- Cross-store transfers (issue 6): a document may name another system's document, e.g. the receiving store's
-- transfer in names the sending store's transfer out as transfer:<from_store>:<doc_no> (docs/transfers.md).
ALTER TABLE documents ADD COLUMN external_ref TEXT;
CREATE INDEX documents_by_external_ref ON documents(external_ref) WHERE external_ref IS NOT NULL;
