"""gunicorn settings for the web process. Uploads stream to spooled temp files, so sync workers
with a few threads are enough; timeouts bound a slow client."""
import multiprocessing
import os

workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", 4))
worker_class = "gthread"
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = None  # the app writes one JSON line per request
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
