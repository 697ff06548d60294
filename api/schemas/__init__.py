"""Declared shapes of everything the /api doors accept (pydantic v2), and the one way a refusal
is reported. The OpenAPI document (api/openapi.py) is generated from these same models, so the
spec and the server cannot disagree."""
