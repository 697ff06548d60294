"""Notifications: e-mail to uploaders about their submissions (approved, rejected, changes
requested, a file infected or unscannable) and a daily digest to admins. One row per message in
`notifications` with a unique idempotency key, claimed before sending, so a job run twice sends
once. Rendering lives in the jobs door (templates); here only the facts, the claim and SMTP.

May import: core.points, core.evidence, core.storage, core.delivery, core.accounts, core.platform.
"""
