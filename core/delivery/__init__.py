"""Delivery: the transactional outbox (append, claim, deliver, back off, dead letters, replay)
and the sinks it delivers to (analytics, cache), idempotent on each record's key.

May import: core.platform.
"""
