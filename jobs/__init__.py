"""RQ job functions. Each takes ids, opens an app context, calls core, and raises on failure."""
