"""Monitoring: the SLO summary behind /api/slo and the Prometheus metrics behind /metrics
(request metrics, readiness, the alerts' gauges), the per-minute backlog samples and the admin
operations dashboard's figures.

May import: core.points, core.evidence, core.delivery, core.storage, core.accounts, core.platform.
"""
