"""Evidence: uploads (spool, size limit, hash, type by content, names), scanning and the scan
pipeline, images and thumbnails, evidence retention, and the sweep of stored objects that no
row points at (orphans).

May import: core.storage, core.platform.
"""
