"""The box's side of sync with the aggregator (docs/sync.md): the outbox uploaded in signed, compressed batches,
cross-store transfers, and HQ's signed packages. The shell around the ledger: it reads the outbox and writes
through the writer like every other part."""
