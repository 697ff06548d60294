"""Review: the reviewer's queue, claims with a lease, hints, progress, and decisions (status,
ledger write and audit in one transaction).

May import: core.points, core.evidence, core.storage, core.delivery, core.accounts, core.platform.
"""
