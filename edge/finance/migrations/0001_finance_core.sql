-- 0001_finance_core: see edge/finance/ (filled in by the issue 3 work).

-- One covering index for the books (trial balance, general ledger openings, AP ageing; edge/finance/books.py):
-- each account's sum over a voucher-id range reads index entries only. It starts with `account`, so it serves
-- every query the older voucher_lines_by_account served. Measured in docs/books.md (tools/bench/trial_balance).
CREATE INDEX voucher_lines_by_account_voucher ON voucher_lines(account, voucher_id, debit_fen, credit_fen);
DROP INDEX voucher_lines_by_account;
