"""PDFs built in the tests (no fixtures on disk): a page with JavaScript, a page that takes the
renderer far longer than any limit, one that outgrows its memory limit, a 10,000-page document,
and bytes that only look like a PDF. Written by hand, with a correct cross-reference table, so every renderer reads
them as intended."""
from __future__ import annotations

import zlib


def build(objects: list[bytes]) -> bytes:
    """A PDF whose object i+1 has body objects[i]; object 1 must be the catalog."""
    return numbered({number: body for number, body in enumerate(objects, 1)})


def numbered(objects: dict[int, bytes]) -> bytes:
    """A PDF of plain objects by number (gaps are free entries) with a classic cross-reference
    table; object 1 must be the catalog."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>"
TEXT = b"0 0 1 rg 72 500 300 200 re f 0 g BT /F1 36 Tf 72 400 Td (Evidence page) Tj ET"


def pages(n: int) -> bytes:
    """n pages sharing one content stream (a 10,000-page file is about 1 MB)."""
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(n))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n,
               stream(TEXT)]
    objects += [PAGE % 3 for _ in range(n)]
    return build(objects)


def with_javascript() -> bytes:
    """One page, and an OpenAction that runs JavaScript in a viewer that runs it."""
    return build([b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>",
                  b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE % 4, stream(TEXT),
                  b"<< /Type /Action /S /JavaScript /JS (app.alert('pwned'); this.exportDataObject({cName: 'x'});) >>"])


def stalling(operations: int = 1000) -> bytes:
    """One page painted by a function-based shading whose PostScript calculator function runs
    `operations` steps for every pixel: little memory, but minutes of pdfium time."""
    function = b"{ " + b"dup mul sqrt " * operations + b"pop dup }"
    return build([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                  b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
                  b" /Resources << /Shading << /Sh0 5 0 R >> >> >>",
                  stream(b"/Sh0 sh"),
                  b"<< /ShadingType 1 /ColorSpace /DeviceRGB /Domain [0 1 0 1] /Matrix [612 0 0 792 0 0] /Function 6 0 R >>",
                  stream(function, b"/FunctionType 4 /Domain [0 1 0 1] /Range [0 1 0 1 0 1]")])


def memory_hog(operations: int = 3_000_000) -> bytes:
    """One page whose compressed content stream (~300 KB) inflates to ~100 MB of drawing
    operations: pdfium's parse outgrows a 256 MB address-space limit and the renderer aborts."""
    body = zlib.compress(b"1 w " + b"0 0 m 612 792 l 612 0 m 0 792 l S " * operations, 9)
    return build([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                  PAGE % 4, stream(body, b"/Filter /FlateDecode")])


def broken() -> bytes:
    """The PDF signature and nothing a parser can follow."""
    return b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 99 0 R\n" + b"\x00\xff" * 500 + b"\n%%EOF\n"
