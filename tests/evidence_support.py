"""Small helpers shared by the evidence-pipeline tests: users, the catalogue, sample files,
signing in, and a real burst RQ worker."""
from __future__ import annotations

import io
import os
import zlib
from datetime import date, timedelta

from PIL import Image

from core.accounts.users import create_user
from core.points.catalogue import seed_catalogue
from core.platform.db import db
from core.evidence.uploads import IncomingFile
from jobs import context
from jobs.worker import build_worker
from tests import pdf_samples

PASSWORD = "correct-horse-battery"
CLEAN_PDF = (
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
)
CSV = b"name,peers,students\nAda,3,20\nGrace,5,31\n"
EICAR_BYTES = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 30, 30), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt, **save)
    return out.getvalue()


def jpeg() -> bytes:
    return image_bytes("JPEG")


def png() -> bytes:
    return image_bytes("PNG")


def yesterday() -> date:
    return date.today() - timedelta(days=1)


def setup_people(app) -> dict[str, int]:
    """The demo catalogue plus an uploader, a second uploader, a reviewer and an admin."""
    with app.app_context():
        seed_catalogue()
        ids = {}
        for name, role in (("owner", "uploader"), ("other", "uploader"), ("reviewer", "reviewer"), ("admin", "admin")):
            user, _ = create_user(f"{name}@example.com", role, PASSWORD)
            ids[name] = user.id
        db.session.commit()
    return ids


def incoming(name: str, data: bytes, declared: str | None = "application/octet-stream",
             field: str = "files[0]") -> IncomingFile:
    return IncomingFile(field=field, filename=name, stream=io.BytesIO(data), declared_type=declared)


def submit(app, user_id: int, files: list[tuple[str, bytes]], activity: str = "EXPLORE", **kwargs):
    """create_submission inside an app context; returns (submission id, [file ids])."""
    from core.evidence.uploads import create_submission

    with app.app_context():
        submission = create_submission(user_id, activity, kwargs.pop("session_date", yesterday()),
                                       files=[incoming(n, d, field=f"files[{i}]") for i, (n, d) in enumerate(files)],
                                       **kwargs)
        return submission.id, [f.id for f in submission.files]


def sign_in(client, who: str) -> None:
    response = client.post("/login", data={"email": f"{who}@example.com", "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def post_upload(app, name: str, data: bytes, content_type: str = "text/csv") -> int:
    """The owner sends one file through the portal's new-submission form; asserts the redirect
    and returns the new submission's id."""
    client = app.test_client()
    sign_in(client, "owner")
    response = client.post("/submissions/new", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(),
        "files": (io.BytesIO(data), name, content_type)}, content_type="multipart/form-data")
    assert response.status_code == 302, response.text[:300]
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def run_worker(app, *, with_scheduler: bool = False) -> None:
    """The production RQ worker (jobs.worker: forking only for the media queue) in burst mode over every queue."""
    context.bind(app)
    svc = app.extensions["points"]
    build_worker(svc).work(burst=True, with_scheduler=with_scheduler, logging_level="WARNING")


def stored_keys(app) -> list[str]:
    """Every object in the app's storage, whatever the backend."""
    return sorted(o.key for o in app.extensions["points"].storage.list(""))


def minio_env(s3: dict, bucket: str) -> dict:
    return {"STORAGE_BACKEND": "minio", "MINIO_ENDPOINT": s3["endpoint"], "MINIO_ACCESS_KEY": s3["access_key"],
            "MINIO_SECRET_KEY": s3["secret_key"], "MINIO_REGION": s3["region"], "MINIO_BUCKET": bucket}


def local_root(app) -> str:
    root = app.extensions["points"].storage.root
    assert os.path.isdir(root)
    return root


def pdf_with_embedded_file(zeros_mib: int, tail: bytes = EICAR_BYTES) -> bytes:
    """A small PDF whose one embedded file (a FlateDecode stream) inflates to `zeros_mib` MiB of
    zeros followed by `tail`: ~1 KB of PDF per MiB inflated, as in the report (123 KB for 120 MiB)."""
    packer = zlib.compressobj(9)
    block = b"\0" * 1024 * 1024
    stream = b"".join([packer.compress(block) for _ in range(zeros_mib)] + [packer.compress(tail), packer.flush()])
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(data.bin) 4 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Type /Filespec /F (data.bin) /EF << /F 5 0 R >> >>",
        b"<< /Type /EmbeddedFile /Filter /FlateDecode /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return pdf_samples.build(objects)
