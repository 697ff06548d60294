"""Admin: what the admin pages change across domains (roles, the catalogue and its Kajabi tag
mappings, unmatched Kajabi events, dead outbox records), each change audited.

May import: every domain package below it (points, evidence, delivery, storage, accounts) and
core.platform.
"""
