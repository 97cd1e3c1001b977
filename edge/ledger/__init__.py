"""The domain core: master data, documents, stock moves, valuation, vouchers, outbox and audit.

Plain functions and frozen dataclasses over a sqlite3 connection. Imports nothing else of ours.
"""
