"""HQ queries and exports over the aggregated facts (issue 6)."""
