"""Retention: evidence objects older than EVIDENCE_RETENTION_DAYS are deleted (with their
thumbnails and previews) and their rows marked; raw Kajabi payloads older than
KAJABI_RAW_RETENTION_DAYS are anonymised; runs and cron batches are recorded.

May import: core.points, core.evidence, core.storage, core.delivery, core.accounts, core.platform.
"""
