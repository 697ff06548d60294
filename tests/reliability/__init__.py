"""The whole system in its own processes under load and faults (storm.py; `make soak` for 20,000)."""
