"""Scenario modules (场景模块, docs/modules.md): plugins with a manifest, run by the module host in worker processes
with time and memory budgets, their proposals checked against the rules' action catalogue, their KPIs measured."""
