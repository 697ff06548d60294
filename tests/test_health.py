"""/healthz and /readyz on real dependencies; /readyz names the one that failed."""

from tests.services.ports import free_port


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body["checks"]) == {"database", "redis", "storage", "scanner"}
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_when_redis_is_down(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_readyz_names_a_database_failure_by_its_kind(make_app):
    make_app()  # the fixture cleans the tables through the first app
    app = make_app(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/points?connect_timeout=2")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == {"ok": False, "error": "OperationalError"}


def test_readyz_is_503_when_clamd_is_down(make_app):
    app = make_app(AV_SCANNER="clamd", CLAMD_URL="tcp://127.0.0.1:1")
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["checks"]["scanner"]["ok"] is False and body["status"] == "unavailable"
    assert body["checks"]["scanner"]["error"] == "scanner_unavailable"
    assert "127.0.0.1" not in response.get_data(as_text=True)  # anyone may ask: no hosts or ports


def test_readyz_with_real_clamd_and_minio(make_app, clamd_server, s3_endpoint):
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, STORAGE_BACKEND="minio",
                   MINIO_ENDPOINT=s3_endpoint["endpoint"], MINIO_ACCESS_KEY=s3_endpoint["access_key"],
                   MINIO_SECRET_KEY=s3_endpoint["secret_key"], MINIO_BUCKET="readyz-bucket")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_json()
