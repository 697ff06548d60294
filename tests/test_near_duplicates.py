"""Reused evidence: a resized, re-compressed copy of an earlier photo, sent by another uploader,
is found through the indexed pHash bands and shown with both thumbnails, a link and the other
submission's status; identical bytes are grouped once per file; the queue marks both; an unrelated
photo is not flagged. Plus the hash arithmetic the index relies on."""
from __future__ import annotations

import io
import random
import re
from datetime import date

import pytest
from hypothesis import given, strategies as st
from PIL import Image, ImageDraw, ImageFilter

from core.accounts.users import create_user
from core.evidence import duplicates
from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile, Submission
from core.points.catalogue import seed_catalogue
from tests.conftest import app_on_migrations
from tests.evidence_support import run_worker, setup_people, sign_in, submit

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def scene(seed: int, size=(900, 600)) -> Image.Image:
    """A photo-like picture: a gradient, soft shapes, seeded."""
    rnd = random.Random(seed)
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x, y = rnd.randrange(size[0]), rnd.randrange(size[1])
        w, h = rnd.randrange(40, 300), rnd.randrange(40, 250)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    return im.filter(ImageFilter.GaussianBlur(2))


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_a_resized_copy_and_a_repeat_are_found_and_an_unrelated_photo_is_not(app):
    ids = setup_people(app)
    original = jpeg(scene(1))
    first, (first_file,) = submit(app, ids["owner"], [("class.jpg", original)])
    copy, (copy_file,) = submit(app, ids["other"], [("mine.jpg", jpeg(scene(1).resize((450, 300)), 40))], "PRESENT")
    unrelated, _ = submit(app, ids["other"], [("other.jpg", jpeg(scene(2)))], "AMPLIFY", counters={"peers": 1})
    repeat, (repeat_file,) = submit(app, ids["other"], [("again.jpg", original)], "PRESENT")
    run_worker(app)  # scans, thumbnails, previews (which store the hashes)
    with app.app_context():
        a, b = db.session.get(EvidenceFile, first_file), db.session.get(EvidenceFile, copy_file)
        distance = duplicates.hamming(a.phash, b.phash)
    assert distance <= app.extensions["points"].settings.near_duplicate_distance

    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get(f"/review/{copy}").get_data(as_text=True)
    pair = re.search(rf'<figure class="pair" data-testid="near-{copy_file}-{first_file}">(.*?)</figure>', html, re.S)
    assert pair, "the near-duplicate is not shown"
    assert f'src="/api/files/{copy_file}/thumbnail"' in pair.group(1) and f'src="/api/files/{first_file}/thumbnail"' in pair.group(1)
    assert f'<a href="/review/{first}">Submission {first}</a>' in pair.group(1) and "In review" in pair.group(1)
    assert f"{distance} of 64 hash bits differ" in pair.group(1)

    repeated = client.get(f"/review/{repeat}").get_data(as_text=True)
    exact = re.search(rf'data-testid="exact-{repeat_file}">(.*?)</p>', repeated, re.S).group(1)
    assert exact.count("<a ") == 1 and f'href="/review/{first}"' in exact  # once per file, as a link
    assert f"near-{repeat_file}-{first_file}" not in repeated  # identical bytes are not listed again as "near"
    assert f"near-{repeat_file}-{copy_file}" in repeated  # ...but the resized copy looks like it too

    queue = client.get("/review").get_data(as_text=True)
    marked = set(map(int, re.findall(r'data-testid="reused-(\d+)"', queue)))
    assert marked == {first, copy, repeat}  # the original shares its bytes with the repeat; not the unrelated one
    assert unrelated not in marked
    assert "Worth a second look" not in client.get(f"/review/{unrelated}").get_data(as_text=True)


@given(U64)
def test_signed_storage_and_bands_round_trip(value):
    signed = duplicates.to_signed(value)
    assert -(1 << 63) <= signed < (1 << 63) and duplicates.to_unsigned(signed) == value
    b = duplicates.bands(signed)
    assert all(0 <= x <= 0xFFFF for x in b) and (b[0] << 48 | b[1] << 32 | b[2] << 16 | b[3]) == value


@given(U64, st.sets(st.integers(min_value=0, max_value=63), max_size=7))
def test_the_band_look_up_misses_nothing_within_its_guaranteed_distance(value, flipped):
    other = value
    for bit in flipped:
        other ^= 1 << bit
    assert duplicates.hamming(value, other) == len(flipped)
    for threshold in (3, 6, 7, 8):  # every distance up to 7 is guaranteed; 8 probes like 7
        if len(flipped) <= threshold:
            assert duplicates.found_by_index(value, other, threshold)


def test_probe_radius_and_probes():
    assert [duplicates.probe_radius(d) for d in (0, 3, 4, 7, 8, 11, 20)] == [0, 0, 1, 1, 1, 1, 1]
    assert len(duplicates.probes(0x1234, 1)) == 17 and len(duplicates.probes(0x1234, 2)) == 137


def test_plain_pictures_have_no_fingerprint():
    # Every flat picture has the same pHash whatever its colour, so two blank pages would "match";
    # they are not hashed.
    red, blue = Image.new("RGB", (400, 300), (200, 30, 30)), Image.new("RGB", (400, 300), (20, 30, 200))
    assert duplicates.image_phash(red) == duplicates.image_phash(blue)
    assert duplicates.too_plain(red) and duplicates.too_plain(blue) and not duplicates.too_plain(scene(1))


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated(request, tmp_path):
    """An app on a database built by the migrations (0010b_phash's covering band indexes)."""
    with app_on_migrations(request.param, tmp_path, "near") as app:
        seed_catalogue()
        db.session.commit()
        yield app
        db.engine.dispose()


def flipped(value: int, bits: int) -> int:
    for bit in range(bits):
        value ^= 1 << (bit * 9 % 64)  # spread over the bands
    return value


def test_the_look_up_finds_earlier_images_of_other_submissions_nearest_first_on_both_databases(migrated):
    """What a reviewer is shown: within the distance, earlier, another submission, not deleted,
    not the same bytes (those are exact repeats); nearest first, then oldest. PostgreSQL checks the
    distance in the index, SQLite in Python: the answers are the same."""
    uploader = create_user("near@example.com", "uploader", "a-long-password-1")[0]
    db.session.flush()
    target = 0x9E3779B97F4A7C15
    rows = {}

    def add(name: str, value: int, *, submission: int | None = None, sha: str | None = None, deleted=False):
        if submission is None:
            s = Submission(user_id=uploader.id, activity_code="EXPLORE", status="in_review",
                           session_date=date(2024, 1, 1), counters={})
            db.session.add(s)
            db.session.flush()
            submission = s.id
        f = EvidenceFile(submission_id=submission, user_id=uploader.id, activity_code="EXPLORE",
                         storage_key=f"evidence/near/{name}.jpg", original_name=f"{name}.jpg", ext="jpg",
                         content_type="image/jpeg", size_bytes=10, sha256=sha or name.ljust(64, "0"), scan_state="clean",
                         deleted_at=utcnow() if deleted else None)
        duplicates.set_hash(f, value)
        db.session.add(f)
        db.session.flush()
        rows[name] = f
        return f

    add("three_bits", flipped(target, 3))
    add("one_bit", flipped(target, 1))
    add("three_bits_later", target ^ (1 << 63) ^ (1 << 40) ^ (1 << 20))  # also 3 bits, newer
    add("far", flipped(target, 12))
    add("deleted", flipped(target, 2), deleted=True)
    add("same_bytes", target, sha="f" * 64)
    probe_submission = add("own_submission_sibling", target).submission_id
    probe = add("probe", target, submission=probe_submission, sha="f" * 64)
    add("later", flipped(target, 1))
    db.session.commit()

    found = duplicates.near_matches(probe, 8)
    assert [(m.other.original_name, m.distance) for m in found] == [
        ("one_bit.jpg", 1), ("three_bits.jpg", 3), ("three_bits_later.jpg", 3)]
    assert [m.other.id for m in duplicates.near_matches(probe, 8, limit=1)] == [rows["one_bit"].id]
    assert duplicates.near_matches(probe, 0) == []
    duplicates.record_match(probe, 8)
    assert probe.near_duplicate_of_id == rows["one_bit"].id
