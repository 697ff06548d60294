"""Evidence: uploads (spool, size limit, hash, type by content, names), scanning and the scan
pipeline, images and thumbnails, and evidence retention.

May import: core.storage, core.platform.
"""
