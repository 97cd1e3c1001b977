"""Cross-store transfers at the aggregator: derived from both stores' documents (issue 6)."""
