"""The demo store: deterministic master data (catalog), seeding through the ledger, and demo.json."""
