-- A posted document's header never changes: corrections are reversing documents.
CREATE TRIGGER documents_append_only_update BEFORE UPDATE ON documents
BEGIN SELECT RAISE(ABORT, 'documents are append-only'); END;
