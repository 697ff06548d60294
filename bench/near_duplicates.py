"""Near-duplicate measurement: how far apart (in pHash bits) copies of one photo land after the edits
people make when they reuse evidence, how far apart unrelated photos land, and how many copies the
four 16-bit band index finds. The output is the table in docs/near-duplicates.md.

    .venv/bin/python bench/near_duplicates.py [--photos 100] [--seed 7] [--threshold 8] [--dir PHOTOS]

No data set is downloaded: the photos are made here, procedurally and reproducibly from the seed
(smooth lighting gradients, soft blobs of colour, hard-edged objects, grain), at 1024x768, saved as
JPEG like a phone would. `--dir` takes real photos from a folder instead (say, a sample of
approved evidence): run it there before changing NEAR_DUPLICATE_DISTANCE. Every image, original or copy, goes through the production path: the
stored JPEG -> core.evidence.images.make_thumbnail at the preview size -> core.evidence.duplicates
.image_phash, exactly as the preview job hashes an upload.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from itertools import combinations

# bench/ holds a queue.py: drop this folder from the path, or it shadows the stdlib `queue`.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps  # noqa: E402

from core.evidence.duplicates import found_by_index, hamming, image_phash, probe_radius  # noqa: E402
from core.evidence.images import make_thumbnail  # noqa: E402
from core.evidence.previews import LARGE_PX  # noqa: E402

W, H = 1024, 768


def photo(rng: np.random.Generator, scene: np.random.Generator | None = None) -> Image.Image:
    """A photo-like picture: a lit background, soft colour blobs, a few objects, sensor grain. With
    `scene`, the background comes from that generator: two photos of one room, other objects."""
    objects_rng = rng
    rng = scene or rng
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-0.12, 0.12, (2, 3))
    img = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    for _ in range(rng.integers(4, 9)):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(60, 300)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    rng = objects_rng
    for _ in range(rng.integers(3, 8)):
        x0, y0 = rng.uniform(0, W * 0.8), rng.uniform(0, H * 0.8)
        box = [x0, y0, x0 + rng.uniform(40, 300), y0 + rng.uniform(40, 250)]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    grain = rng.normal(0, 6, (H, W, 3))
    return Image.fromarray(np.clip(np.asarray(im, np.float32) + grain, 0, 255).astype(np.uint8), "RGB")


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def crop(im: Image.Image, share: float) -> Image.Image:
    dx, dy = int(im.width * share / 2), int(im.height * share / 2)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


EDITS = {
    "resized to 50%": lambda im: jpeg(im.resize((W // 2, H // 2), Image.LANCZOS)),
    "resized to 25%": lambda im: jpeg(im.resize((W // 4, H // 4), Image.LANCZOS)),
    "re-compressed, JPEG quality 25": lambda im: jpeg(im, 25),
    "re-saved as PNG": lambda im: _png(im),
    "cropped 5% (borders)": lambda im: jpeg(crop(im, 0.05)),
    "cropped 10% (borders)": lambda im: jpeg(crop(im, 0.10)),
    "brighter (+25%)": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.25)),
    "more contrast (+30%)": lambda im: jpeg(ImageEnhance.Contrast(im).enhance(1.3)),
    "recoloured (saturation x0.3, warm tint)": lambda im: jpeg(_tint(ImageEnhance.Color(im).enhance(0.3))),
    "greyscale": lambda im: jpeg(ImageOps.grayscale(im).convert("RGB")),
    "resized 50% + cropped 5% + quality 40": lambda im: jpeg(crop(im.resize((W // 2, H // 2), Image.LANCZOS), 0.05), 40),
    "mirrored (not a near-duplicate by design)": lambda im: jpeg(ImageOps.mirror(im)),
}


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def _tint(im: Image.Image) -> Image.Image:
    r, g, b = im.split()
    return Image.merge("RGB", (r.point(lambda v: min(255, v + 20)), g, b.point(lambda v: max(0, v - 20))))


def _folder(path: str) -> list[str]:
    names = sorted(n for n in os.listdir(path) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    return [os.path.join(path, n) for n in names]


def _load(path: str) -> Image.Image:
    """A photo from disk at the procedural photos' size, so every edit means the same."""
    with Image.open(path) as im:
        return ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (W, H))


def hashed(data: bytes) -> int:
    """The production path: stored bytes -> the preview rendition -> pHash."""
    large = make_thumbnail(io.BytesIO(data), max_px=LARGE_PX)
    with Image.open(io.BytesIO(large)) as im:
        return image_phash(im)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threshold", type=int, default=8)
    parser.add_argument("--dir", help="use the JPEG/PNG photos in this folder as the originals instead")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t = args.threshold

    originals, copies = [], {name: [] for name in EDITS}
    sources = _folder(args.dir) if args.dir else None
    count = len(sources) if sources else args.photos
    for i in range(count):
        im = _load(sources[i]) if sources else photo(rng)
        originals.append(hashed(jpeg(im)))
        for name, edit in EDITS.items():
            copies[name].append(hashed(edit(im)))
        print(f"\rhashed {i + 1}/{count} photos and their {len(EDITS)} copies", end="", file=sys.stderr)
    print(file=sys.stderr)

    what = f"photos from {args.dir}" if sources else f"procedural photos (seed {args.seed})"
    print(f"pHash (64 bits) of {count} {what}; threshold {t} bits\n")
    print("| copy | median distance | max distance | found at <= threshold | found by the band index |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in copies.items():
        d = [hamming(o, c) for o, c in zip(originals, values)]
        within = [o_c for o_c, dist in zip(zip(originals, values), d) if dist <= t]
        indexed = sum(found_by_index(o, c, t) for o, c in within)
        print(f"| {name} | {int(np.median(d))} | {max(d)} | {len(within)}/{len(d)} ({100 * len(within) / len(d):.1f}%) "
              f"| {indexed}/{len(within)} |")

    scenes = []  # same background (lighting, colour blobs), other objects: a harder negative
    for i in range(count // 2):
        seed = int(rng.integers(1 << 30))
        scenes.append((hashed(jpeg(photo(rng, np.random.default_rng(seed)))),
                       hashed(jpeg(photo(rng, np.random.default_rng(seed))))))
    same_room = [hamming(a, b) for a, b in scenes]
    print(f"\nTwo photos of one scene with other objects in it: {len(same_room)} pairs; smallest distance "
          f"{min(same_room)}, median {np.median(same_room):.0f}; at <= {t}: {sum(d <= t for d in same_room)}.")

    pairs = [hamming(a, b) for a, b in combinations(originals, 2)]
    band_pairs = sum(found_by_index(a, b, t) for a, b in combinations(originals, 2))
    print(f"Unrelated photos: {len(pairs)} pairs; smallest distance {min(pairs)}, "
          f"1st percentile {np.percentile(pairs, 1):.0f}, median {np.median(pairs):.0f}.")
    for limit in sorted({2, 4, 6, 8, 10, 12, t}):
        fp = sum(p <= limit for p in pairs)
        print(f"- threshold {limit}: {fp} false matches ({100 * fp / len(pairs):.3f}% of pairs)")
    print(f"- unrelated pairs the band look-up reads (probe radius {probe_radius(t)}), then drops: {band_pairs} "
          f"({100 * band_pairs / len(pairs):.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
