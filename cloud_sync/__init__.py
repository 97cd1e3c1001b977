"""StoreBox cloud aggregator (docs/cloud-aggregator.md): boxes push their outbox here in signed batches, HQ reads
stock, sales, vouchers and compliance across stores, and downloads signed packages back to the boxes. Stateless
over its database (SQLite for a pilot, PostgreSQL for a chain)."""
