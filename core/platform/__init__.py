"""Platform: what every domain stands on. Settings, the database and every table, errors, logs,
request hooks, the service holder built by create_app, queues (enqueue after commit), audit
events, and the one file-name cleaner.

May import: nothing else in core (no domain package, no door).
"""
