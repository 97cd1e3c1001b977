"""Scenario-module canary at the aggregator (docs/canary.md): rollouts to pilot stores, the stores' KPI reports,
the promotion gate, automatic rollback, and which module packages each store is served."""
