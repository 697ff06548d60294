"""The rules and the parts, grouped by domain over one platform package. No templates, and no
request objects outside the shared request hooks (platform.web) and the upload parser
(evidence.form_parsing).

Imports run one way (checked by `lint-imports`, see .importlinter):
doors (app.py, commands, portal, api, jobs) -> admin | review | monitoring | retention | notifications
-> points | evidence
-> delivery | storage | accounts -> platform.
"""
