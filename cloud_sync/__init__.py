"""StoreBox cloud aggregator (filled in by the cloud sync issue)."""
