"""Accounts: users, e-mail and password handling, sign-in checks and throttling.

May import: core.platform.
"""
