"""`ned demo`: edit the built-in sample clip to each of the six non-neutral emotions and
assemble a side-by-side grid video (input first), all with the sample's audio."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from ned import __version__
from ned.layout import ensure_writable_dir
from ned.manipulate.plan import ManipulationSpec
from ned.media import VideoWriter, iter_frames, probe
from ned.pipeline import EditOptions, analyse_clip, edit_analysed

DEMO_EMOTIONS = ("happy", "angry", "sad", "surprised", "fear", "disgusted")


def label_tile(rgb: np.ndarray, text: str, size: int) -> np.ndarray:
    """Resize ``rgb`` to ``size x size`` (letterboxed) and write ``text`` at the top."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    tile[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    cv2.putText(tile, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def write_grid(clips: list[tuple[str, Path]], output: Path, audio_from: Path, *, tile: int = 256,
               columns: int = 4) -> Path:
    """Tile several clips of equal length into one video (labelled), with one clip's audio."""
    info = probe(clips[0][1])
    rows = -(-len(clips) // columns)
    comment = f"edited by ned {__version__}: side-by-side grid of " + ", ".join(name for name, _ in clips)
    with ExitStack() as stack:
        streams = [iter_frames(path) for _, path in clips]
        writer = stack.enter_context(VideoWriter(output, width=tile * columns, height=tile * rows, fps=info.fps,
                                                 audio_from=audio_from, comment=comment))
        for frames in zip(*streams):
            canvas = np.zeros((tile * rows, tile * columns, 3), np.uint8)
            for k, ((name, _), frame) in enumerate(zip(clips, frames)):
                r, c = divmod(k, columns)
                canvas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = label_tile(frame.rgb, name, tile)
            writer.write(canvas)
    return output


def run_demo(out_dir: Path, *, source: Path | None = None, emotions: tuple[str, ...] = DEMO_EMOTIONS,
             quiet: bool = False) -> dict[str, Path]:
    """Edit ``source`` (default: the built-in sample) to each emotion; returns name -> path
    (one entry per emotion plus ``"grid"`` and ``"input"``)."""
    from ned.sample import sample_clip_path

    source = Path(source) if source is not None else sample_clip_path()
    ensure_writable_dir(out_dir)
    analysis = analyse_clip(source, quiet=quiet)
    outputs: dict[str, Path] = {"input": source}
    base = EditOptions(quiet=quiet)
    for emotion in emotions:
        options = dataclasses.replace(base, manipulation=ManipulationSpec.from_strings([emotion]))
        outputs[emotion] = edit_analysed(analysis, source, out_dir / f"{emotion}.mp4", options).output
    grid = [("input", source)] + [(e, outputs[e]) for e in emotions]
    outputs["grid"] = write_grid(grid, out_dir / "grid.mp4", source)
    return outputs
