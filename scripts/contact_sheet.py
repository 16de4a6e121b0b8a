"""Contact sheet of a preprocessed <celeb_path>: a few frames of chosen folders side by side.

    python scripts/contact_sheet.py <celeb_path> -o sheet.png [--folders images nmfcs ...] [--frames 6]

Each row is one frame; each column one folder. Write the sheet outside the repository
when the clips are third-party footage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ned.layout import atomic_write_image, read_image

DEFAULT_FOLDERS = ("images", "nmfcs", "shapes", "faces_aligned", "masks", "nmfcs_aligned")


def sheet(celeb: Path, folders: list[str], frames: int, tile: int = 160) -> np.ndarray:
    """``(rows*tile, cols*tile, 3) uint8`` grid of evenly spaced frames."""
    first = sorted((celeb / folders[0]).glob("*.*"))
    picks = np.linspace(0, len(first) - 1, frames).round().astype(int)
    rows = []
    for i in picks:
        row = []
        for folder in folders:
            files = sorted((celeb / folder).glob(f"{i:06d}.*"))
            img = read_image(files[0]) if files else np.zeros((tile, tile, 3), np.uint8)
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            row.append(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(row))
    return np.vstack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("celeb", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--folders", nargs="+", default=list(DEFAULT_FOLDERS))
    parser.add_argument("--frames", type=int, default=6)
    args = parser.parse_args()
    atomic_write_image(args.out, sheet(args.celeb, args.folders, args.frames))
    print(args.out)


if __name__ == "__main__":
    main()
