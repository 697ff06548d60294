"""Allow-list typing on real bytes, through the real libmagic."""
from __future__ import annotations

import codecs
import io
import unicodedata
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core.platform.errors import UnsupportedMediaType, ValidationError
from core.platform.filenames import sanitise_filename
from core.evidence.filetypes import ALLOWED, TypedFile, check, detect, ext_of

ALL = ("pdf", "jpg", "jpeg", "png", "csv")
CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")

MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
)
CSV = b"name,points,date\nAlice,10,2024-01-01\nBob,20,2024-01-02\n"
HTML = b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><script>alert(1)</script></body></html>\n"


def image_bytes(fmt: str, size: tuple[int, int] = (40, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("inner.txt", "hello")
    return out.getvalue()


def refused(filename: str, data: bytes, allowed: tuple[str, ...] = ALL) -> ValidationError | UnsupportedMediaType:
    with pytest.raises((ValidationError, UnsupportedMediaType)) as info:
        check(filename, data, allowed, field="files[0]")
    return info.value


# -- detection ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (MINIMAL_PDF, "application/pdf"),
        (image_bytes("JPEG"), "image/jpeg"),
        (image_bytes("PNG"), "image/png"),
        (CSV, "text/csv"),
        (b"name;points\nAlice;10\n", "text/plain"),
        (HTML, "text/html"),
        (zip_bytes(), "application/zip"),
        (b"MZ" + b"\0" * 62, "application/x-dosexec"),
        (b"", "application/x-empty"),
    ],
)
def test_detect_observed_libmagic_types(data: bytes, expected: str) -> None:
    assert detect(data) == expected


def test_detect_pe_from_clamav_test_binary() -> None:
    assert detect(CLAM_EXE) == "application/vnd.microsoft.portable-executable"


def test_detect_restores_stream_position() -> None:
    stream = io.BytesIO(b"junk" + MINIMAL_PDF)
    stream.seek(4)
    assert detect(stream) == "application/pdf"
    assert stream.tell() == 4


def test_detect_reads_only_the_head() -> None:
    # A PDF signature after 8 KiB is not seen: detection is bounded.
    assert detect(io.BytesIO(b"a,b\n" * 4096 + MINIMAL_PDF)) != "application/pdf"


# -- accepted ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "data", "ext", "content_type"),
    [
        ("evidence.pdf", MINIMAL_PDF, "pdf", "application/pdf"),
        ("Photo.JPG", image_bytes("JPEG"), "jpg", "image/jpeg"),
        ("photo.jpeg", image_bytes("JPEG"), "jpeg", "image/jpeg"),
        ("chart.png", image_bytes("PNG"), "png", "image/png"),
        ("points.csv", CSV, "csv", "text/csv"),
        ("semicolons.csv", b"name;points\nAlice;10\n", "csv", "text/csv"),
        ("bom.csv", "\ufeffname,points\nZoë,10\n".encode(), "csv", "text/csv"),
        ("utf16.csv", "name,points\nZoë,10\n".encode("utf-16"), "csv", "text/csv"),
        ("utf16be.csv", codecs.BOM_UTF16_BE + "name;points\nZoë;10\n".encode("utf-16-be"), "csv", "text/csv"),
    ],
)
def test_accepts_allowed_files(name: str, data: bytes, ext: str, content_type: str) -> None:
    typed = check(name, data, ALL)
    assert isinstance(typed, TypedFile)
    assert (typed.ext, typed.content_type) == (ext, content_type)


def test_csv_cut_mid_character_at_head_end_is_accepted() -> None:
    data = ("name,city\n" + "Zoë,Kraków\n" * 900).encode()
    # Cut just after the lead byte of a two-byte character, as an 8 KiB head read can.
    cut = max(i for i in range(7000, 8192) if data[i] >= 0xC2) + 1
    head = data[:cut]
    assert 0xC2 <= head[-1] <= 0xDF
    assert check("cities.csv", head, ALL).ext == "csv"


# -- refused -----------------------------------------------------------------------------------

def test_exe_renamed_pdf_is_a_mismatch_naming_a_windows_program() -> None:
    err = refused("invoice.pdf", CLAM_EXE.read_bytes())
    assert isinstance(err, UnsupportedMediaType) and err.status == 415
    assert err.code == "file_type_mismatch"
    assert err.details == [{"field": "files[0]", "issue": "detected application/vnd.microsoft.portable-executable"}]
    assert err.message == "This file says it is a PDF, but its contents are a Windows program."


def test_mz_stub_renamed_pdf_reports_dosexec() -> None:
    err = refused("invoice.pdf", b"MZ" + b"\0" * 62)
    assert err.code == "file_type_mismatch"
    assert err.details[0]["issue"] == "detected application/x-dosexec"


def test_exe_extension_is_not_allowed() -> None:
    err = refused("setup.exe", b"MZ" + b"\0" * 62)
    assert err.code == "file_type_not_allowed"
    assert err.details == [{"field": "files[0]", "issue": "detected application/x-dosexec"}]
    assert ".exe" in err.message


def test_double_extension_is_judged_by_the_last() -> None:
    assert refused("report.pdf.exe", MINIMAL_PDF).code == "file_type_not_allowed"
    assert check("report.exe.pdf", MINIMAL_PDF, ALL).ext == "pdf"


def test_html_renamed_csv_is_refused() -> None:
    err = refused("points.csv", HTML)
    assert err.code == "file_type_mismatch"
    assert err.details[0]["issue"] == "detected text/html"
    assert "web page" in err.message


def test_csv_with_script_markup_is_refused() -> None:
    assert refused("points.csv", b"name,points\n<script>alert(1)</script>,10\n").code == "file_type_mismatch"


def test_plain_text_with_markup_libmagic_misses_is_refused_by_the_text_check() -> None:
    data = b"name,points\n" + b"Alice,10\n" * 50 + b"x,=1 javascript:alert(1)\n"
    assert detect(data) in ALLOWED["csv"]
    assert refused("points.csv", data).code == "file_type_mismatch"


def test_csv_with_nul_bytes_is_refused() -> None:
    assert refused("points.csv", b"a,b\n1,\x002\n").code == "file_type_mismatch"


def test_zip_renamed_png_is_a_mismatch() -> None:
    err = refused("photo.png", zip_bytes())
    assert err.code == "file_type_mismatch"
    assert err.details[0]["issue"] == "detected application/zip"
    assert err.message == "This file says it is a PNG image, but its contents are a ZIP archive."


def test_png_named_jpg_is_a_mismatch() -> None:
    assert refused("photo.jpg", image_bytes("PNG")).code == "file_type_mismatch"


def test_content_of_a_switched_off_type_is_not_allowed() -> None:
    err = refused("photo.jpg", image_bytes("PNG"), allowed=("pdf", "jpg"))
    assert err.code == "file_type_not_allowed"
    assert err.details[0]["issue"] == "detected image/png"


def test_extension_switched_off_in_settings_is_not_allowed() -> None:
    assert refused("points.csv", CSV, allowed=("pdf",)).code == "file_type_not_allowed"


def test_empty_file_is_refused() -> None:
    err = refused("empty.pdf", b"")
    assert isinstance(err, ValidationError) and err.status == 400
    assert err.code == "file_empty"


@pytest.mark.parametrize("name", ["", "   ", "../../etc/passwd", "noextension", "evil.exe\x00.pdf", ".pdf"])
def test_unusable_names_are_refused(name: str) -> None:
    err = refused(name, MINIMAL_PDF)
    assert err.code == "filename_invalid"
    assert err.status == 400


# -- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("evil\x00.pdf", "evil.pdf"),
        ("tab\tand\nnewline.csv", "tab and newline.csv"),
        ("  many    spaces   .pdf", "many spaces .pdf"),
        ("...hidden.pdf", "hidden.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),
        ('say "hi".pdf', "say _hi_.pdf"),
        ("", "file"),
        ("../..", "file"),
        ("\x00\x01", "file"),
    ],
)
def test_sanitise_filename(raw: str, clean: str) -> None:
    assert sanitise_filename(raw) == clean


def test_sanitise_keeps_non_ascii_letters_in_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "Zoë Łukasz 東京 résumé.pdf")
    clean = sanitise_filename(decomposed)
    assert clean == "Zoë Łukasz 東京 résumé.pdf"
    assert unicodedata.is_normalized("NFC", clean)
    assert check(decomposed, MINIMAL_PDF, ALL).ext == "pdf"


def test_sanitise_caps_long_names_and_keeps_the_extension() -> None:
    clean = sanitise_filename("a" * 300 + ".pdf")
    assert len(clean) == 120
    assert clean.endswith(".pdf")
    assert check("a" * 300 + ".pdf", MINIMAL_PDF, ALL).ext == "pdf"
    assert len(sanitise_filename("b" * 300)) == 120


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("report.pdf.exe", "exe"),
        ("report.exe.pdf", "pdf"),
        ("PHOTO.JPEG", "jpeg"),
        ("archive.tar.gz", "gz"),
        ("dir.d/noext", ""),
        (".bashrc", ""),
        ("trailing.pdf.", "pdf"),
        ("", ""),
    ],
)
def test_ext_of(name: str, ext: str) -> None:
    assert ext_of(name) == ext
