"""Outside pass on forms refused for their fields that now also check the files: problems found
from outside, each as the smallest input that shows it (these tests fail until it is fixed)."""
from __future__ import annotations

import html as html_lib
import io
import re

from tests.evidence_support import yesterday
from tests.test_forms_keep_work import EXE, _changes_requested, _client, _kept, _rechoose
from tests.test_portal_support import png


def _files_error(html: str) -> str:
    match = re.search(r'id="files-error">(.*?)</p>', html, re.S)
    return html_lib.unescape(match.group(1)) if match else ""


def test_more_files_than_allowed_with_a_missing_date_says_the_limit_in_the_same_round(app):
    """11 pictures and no date: the page keeps 10, asks for the 11th to be chosen again and says
    nothing about the limit of 10, so the retry it asks for is refused as too many files."""
    client = _client(app)
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": "",
        "files": [(io.BytesIO(png()), f"p{i}.png") for i in range(11)]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Attach at most 10 files" in _files_error(html)


def test_an_exe_past_the_file_limit_is_not_asked_to_be_chosen_again(app):
    """11 pictures and an .exe, no date: the .exe (12th) is never checked, gets no message and is
    listed under "Choose these files again" beside a good picture."""
    client = _client(app)
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": "",
        "files": [(io.BytesIO(png()), f"p{i}.png") for i in range(11)] + [(io.BytesIO(EXE), "tool.exe")]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "tool.exe" not in _rechoose(html) and "tool.exe" not in _kept(html)
    assert "tool.exe" in _files_error(html)


def test_the_correction_form_with_a_bad_date_says_the_file_limit_counting_the_files_it_has(app):
    """A submission with 1 file; 10 new pictures and a bad date: all 10 are kept without a word,
    and the retry the page invites (date fixed, 10 kept files) is refused as 11 files."""
    client, sid = _changes_requested(app)
    response = client.post(f"/submissions/{sid}/resubmit", content_type="multipart/form-data", data={
        "session_date": "not a date", "files": [(io.BytesIO(png()), f"n{i}.png") for i in range(10)]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Attach at most 10 files" in _files_error(html)


def test_the_retry_a_refused_form_invites_goes_through(app):
    """Doing what the refused page says (fix the date, keep the kept files, choose the listed
    ones again) must not be refused again for the files."""
    client = _client(app)
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": "",
        "files": [(io.BytesIO(png()), f"p{i}.png") for i in range(11)]})
    html = response.get_data(as_text=True)
    listed = re.search(r'data-testid="rechoose">.*?<strong>(.*?)</strong>', html, re.S)
    again = [name.strip() for name in listed.group(1).split(",")] if listed else []
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "keep": list(_kept(html).values()),
        "files": [(io.BytesIO(png()), name) for name in again]})
    assert response.status_code == 302, _files_error(response.get_data(as_text=True))



def test_too_many_files_with_good_fields_leaves_the_extra_out_and_the_retry_goes_through(app):
    """The same kind with the fields right (the refusal is the domain's): the extra files are
    neither kept nor asked for again, so keeping what was kept goes through."""
    client = _client(app)
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(),
        "files": [(io.BytesIO(png()), f"p{i}.png") for i in range(11)]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "Attach at most 10 files" in _files_error(html)
    assert len(_kept(html)) == 10 and _rechoose(html) == ""
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "keep": list(_kept(html).values())})
    assert response.status_code == 302


def test_a_long_list_of_left_out_files_is_named_briefly(app):
    client = _client(app)
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": "",
        "files": [(io.BytesIO(png()), f"p{i}.png") for i in range(16)]})
    error = _files_error(response.get_data(as_text=True))
    assert "left out: p10.png, p11.png, p12.png, p13.png, p14.png and 1 more." in error
