"""Monitoring: the SLO summary behind /api/slo and the Prometheus metrics behind /metrics.

May import: core.points, core.evidence, core.delivery, core.storage, core.accounts, core.platform.
"""
