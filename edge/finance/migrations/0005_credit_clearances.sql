-- 0005_credit_clearances: what a supplier's credit note (红字发票) cleared of the supplier returns (退供应商单).
-- A supplier return books 220202 (暂估应付) red-letter at its net value: a debit waiting for the supplier's
-- credit note. The credit note clears that open value (its `estimate`), line by line of the return, so the same
-- return value is never cleared twice (the triggers below refuse more than the return line's net value, a
-- document that is not a supplier return, and a reversed return), and a cleared return cannot be reversed.

CREATE TABLE credit_clearances (
    credit_id        INTEGER NOT NULL REFERENCES invoices(id),   -- the credit note
    credit_line_no   INTEGER NOT NULL,
    return_id        INTEGER NOT NULL REFERENCES documents(id),  -- the supplier_return document
    return_line_no   INTEGER NOT NULL,
    net_fen          INTEGER NOT NULL CHECK (net_fen > 0),       -- of the return line's net value (excl. VAT)
    PRIMARY KEY (credit_id, credit_line_no, return_id, return_line_no)
);
CREATE INDEX credit_clearances_by_return_line ON credit_clearances(return_id, return_line_no);

CREATE TRIGGER credit_clearances_of_a_return BEFORE INSERT ON credit_clearances
WHEN NOT EXISTS (SELECT 1 FROM documents WHERE id = NEW.return_id AND type = 'supplier_return')
  OR NOT EXISTS (SELECT 1 FROM document_lines WHERE document_id = NEW.return_id AND line_no = NEW.return_line_no)
BEGIN SELECT RAISE(ABORT, 'a credit note clears supplier return lines only'); END;
CREATE TRIGGER credit_clearances_not_reversed BEFORE INSERT ON credit_clearances
WHEN EXISTS (SELECT 1 FROM documents WHERE reverses_id = NEW.return_id)
BEGIN SELECT RAISE(ABORT, 'a reversed supplier return cannot be cleared by a credit note'); END;
CREATE TRIGGER credit_clearances_within_return BEFORE INSERT ON credit_clearances
WHEN NEW.net_fen + (SELECT COALESCE(SUM(net_fen), 0) FROM credit_clearances
                    WHERE return_id = NEW.return_id AND return_line_no = NEW.return_line_no)
     > (SELECT gross_fen - tax_fen FROM document_lines WHERE document_id = NEW.return_id AND line_no = NEW.return_line_no)
BEGIN SELECT RAISE(ABORT, 'supplier return value credited twice'); END;
CREATE TRIGGER credit_clearances_append_only_update BEFORE UPDATE ON credit_clearances
BEGIN SELECT RAISE(ABORT, 'credit clearances are append-only'); END;
CREATE TRIGGER credit_clearances_append_only_delete BEFORE DELETE ON credit_clearances
BEGIN SELECT RAISE(ABORT, 'credit clearances are append-only'); END;

-- The ledger refuses reversing a document another references by ref_id (a credit note refers to the first return
-- it cleared); this refuses reversing any other return a credit note cleared, which would leave 220202 wrong.
-- A message starting `refused: ` is a business refusal: the ledger answers it as one (code `refused_by_rule`).
CREATE TRIGGER supplier_return_cleared_not_reversed BEFORE INSERT ON documents
WHEN NEW.reverses_id IS NOT NULL AND EXISTS (SELECT 1 FROM credit_clearances WHERE return_id = NEW.reverses_id)
BEGIN SELECT RAISE(ABORT, 'refused: 已被红字发票冲抵的退货不能冲销 / a supplier return cleared by a credit note cannot be reversed'); END;
