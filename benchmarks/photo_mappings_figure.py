"""Draw docs/images/photo_mappings.png: for each mapping of ``photo_mappings``, four test crops, A beside B.

python benchmarks/photo_mappings_figure.py [--size 96] [--out docs/images/photo_mappings.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ganforge.data.photos import MAPPINGS, PhotoMappings

GAP, LABEL = 6, 80


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--first", type=int, default=9, help="index of the first test crop shown")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "photo_mappings.png")
    args = parser.parse_args(argv)
    size, n = args.size, args.crops
    width = LABEL + n * (2 * size + GAP)
    height = 20 + len(MAPPINGS) * (size + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for k in range(n):
        draw.text((LABEL + k * (2 * size + GAP) + size // 2 - 4, 4), "A", fill="black")
        draw.text((LABEL + k * (2 * size + GAP) + size + size // 2 - 4, 4), "B", fill="black")
    for row, mapping in enumerate(MAPPINGS):
        data = PhotoMappings(
            mapping=mapping, size=size, scale=0.5, length=args.first + n, seed=0, split="test", flip=False
        )
        top = 20 + row * (size + GAP)
        draw.text((4, top + size // 2 - 6), mapping, fill="black")
        for k in range(n):
            item = data[args.first + k]
            for j, domain in enumerate("AB"):
                array = ((item[domain].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
                canvas.paste(Image.fromarray(array), (LABEL + k * (2 * size + GAP) + j * size, top))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
