"""The PDF renderer's child process: `python -m core.evidence.pdf_render IN OUT_DIR MAX_PAGES MAX_PX`.

Runs in a process of its own, started by core.evidence.previews with an address-space limit
(RLIMIT_AS), a CPU limit, an output-size limit and a wall-clock timeout, and an environment
without the app's settings or secrets: whatever a hostile PDF does to the renderer (pdfium, via
pypdfium2, built without JavaScript or XFA support) ends with this process. Imports nothing of the
app. Writes page-1.png ... page-N.png (the first MAX_PAGES pages, each at most MAX_PX on its
longer side) into OUT_DIR and prints one JSON line: {"pages": N, "page_count": TOTAL}, or
{"error": "reason"} with exit status 3 when the document cannot be opened.
"""
from __future__ import annotations

import json
import os
import sys

UNREADABLE_EXIT = 3
MAX_SCALE = 2.0  # 144 dpi: enough to read body text; tiny pages are not blown up past it


def render(src: str, out_dir: str, max_pages: int, max_px: int) -> dict:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(src)
    except pdfium.PdfiumError as exc:
        text = str(exc).lower()
        return {"error": "password-protected PDF" if "password" in text else "not a readable PDF"}
    try:
        total = len(pdf)
        made = 0
        for index in range(min(total, max_pages)):
            page = pdf[index]
            width, height = page.get_size()  # points; a hostile MediaBox may be 0 or huge
            if width <= 0 or height <= 0:
                break
            scale = min(MAX_SCALE, max_px / width, max_px / height)
            image = page.render(scale=scale).to_pil()
            image.save(os.path.join(out_dir, f"page-{index + 1}.png"), "PNG", optimize=False)
            made += 1
            page.close()
        return {"pages": made, "page_count": total}
    finally:
        pdf.close()


def main(argv: list[str]) -> int:
    src, out_dir, max_pages, max_px = argv[0], argv[1], int(argv[2]), int(argv[3])
    result = render(src, out_dir, max_pages, max_px)
    sys.stdout.write(json.dumps(result) + "\n")
    return UNREADABLE_EXIT if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
