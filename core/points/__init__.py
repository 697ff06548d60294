"""Points: the pure rules, the catalogue, the append-only ledger (one event and the batch path),
Kajabi tags, backfills, daily rollups and stats.

May import: core.delivery (the outbox append in the ledger's transaction), core.accounts,
core.platform.
"""
