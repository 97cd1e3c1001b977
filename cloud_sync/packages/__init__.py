"""HQ packages at the aggregator: stored signed, listed and served to the stores they target (issue 6)."""
