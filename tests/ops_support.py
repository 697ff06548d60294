"""A small operations picture for the dashboard tests (no tests here): an item in review, an
infected file, a quarantined file, Kajabi events around the 60 s line, a month of rollups and a
day of per-minute samples."""
from __future__ import annotations

import io
from datetime import timedelta

from core.evidence import integrity
from core.monitoring import ops_samples
from core.platform.db import db, utcnow
from core.platform.models import DailyRollup, EvidenceFile, KajabiEvent, OpsSample
from tests.evidence_support import CLEAN_PDF, png, run_worker, setup_people, submit

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def build_picture(app) -> dict:
    people = setup_people(app)
    review_id, _ = submit(app, people["owner"], [("whiteboard.png", png())])
    _, [infected] = submit(app, people["owner"], [("notes.csv", EICAR)])
    _, [tampered] = submit(app, people["owner"], [("report.pdf", CLEAN_PDF)], activity="PRESENT")
    run_worker(app)
    storage = app.extensions["points"].storage
    now = utcnow()
    with app.app_context():
        key = db.session.get(EvidenceFile, tampered).storage_key
        storage.put(key, io.BytesIO(b"%PDF-1.4 altered\n"), 17, "application/pdf")
        integrity.sweep(storage)
        for i in range(40):  # 38 on time, 2 late
            received = now - timedelta(hours=2, minutes=i)
            delay = 200 if i < 2 else 3 + i % 20
            db.session.add(KajabiEvent(event_id=f"ops-{i}", event_type="tag_added", payload={}, state="ledgered",
                                       received_at=received, ledgered_at=received + timedelta(seconds=delay)))
        for i in range(3):
            db.session.add(KajabiEvent(event_id=f"ops-u{i}", event_type="tag_added", payload={}, state="queued_unmatched",
                                       received_at=now - timedelta(minutes=30)))
        for day in range(30):
            for code, pts in (("LEARN", 10 * (day % 4)), ("EXPLORE", 50 * (day % 3 == 0)), ("AMPLIFY", 3 * (day % 5))):
                if pts:
                    db.session.add(DailyRollup(day=(now - timedelta(days=day)).date(), activity_code=code, points=pts,
                                               events=1, users=1))
        for minute in range(24 * 60, 0, -10):  # a day of samples, every 10 minutes to keep it quick
            at = (now - timedelta(minutes=minute)).replace(second=0, microsecond=0)
            wave = (minute // 10) % 12
            db.session.add(OpsSample(taken_at=at, in_review=1, scans_pending=wave % 4, outbox_pending=wave,
                                     outbox_lag_s=float(wave * 5), unmatched=3,
                                     queue_depths={"scans": wave % 3, "ledger": wave % 5, "outbox": 0}))
        db.session.commit()
        ops_samples.sample(app.extensions["points"].queues)
    return {"people": people, "review_id": review_id, "infected": infected, "tampered": tampered}
