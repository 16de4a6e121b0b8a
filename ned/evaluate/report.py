"""Outputs of ``ned evaluate``: the summary table, JSON, a self-contained HTML report and
a PNG summary (the same content, for terminals and image viewers).

Figures are drawn with OpenCV and numpy (no plotting dependency): a contact sheet of
input/edited face crops, and curves over time of the target emotion's probability (with
strips of the per-frame top FER class), the mouth aperture and the identity distance.
Images are ``(H, W, 3) uint8`` RGB.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ned import __version__
from ned.layout import atomic_write_bytes
from ned.errors import OutputError
from ned.evaluate.evaluate import EvaluationResult
from ned.evaluate.models import FER_LABELS
from ned.types import check_array

__all__ = [
    "GUIDES",
    "SummaryRow",
    "Curve",
    "summary_rows",
    "format_table",
    "verdict",
    "line_plot",
    "class_strip",
    "contact_sheet",
    "figures",
    "render_summary_png",
    "render_html",
    "write_json",
    "write_html",
    "write_png",
]

# Pass marks shown beside the numbers: the acceptance targets of the rendering issue
# (speech r, identity distance, jitter ratio, container equalities); flicker and
# background PSNR are guides of this tool (H.264 at crf 18 keeps untouched pixels
# above ~38 dB; blending that pumps raises the flicker ratio).
GUIDES = {
    "aperture_r_min": 0.9,
    "identity_mean_max": 0.35,
    "jitter_ratio_max": 1.2,
    "flicker_ratio_max": 1.2,
    "background_psnr_min_db": 35.0,
}

_WHITE = (255, 255, 255)
_INK = (30, 30, 30)
_GRID = (225, 225, 225)
_INPUT_COLOUR = (150, 150, 150)
_OUTPUT_COLOUR = (214, 96, 20)
_OK = (30, 140, 60)
_BAD = (200, 40, 40)
# One colour per FER class, in FER_LABELS order.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (214, 39, 40),    # angry
    (140, 86, 75),    # disgust
    (148, 103, 189),  # fear
    (255, 187, 30),   # happy
    (31, 119, 180),   # sad
    (23, 190, 207),   # surprise
    (190, 190, 190),  # neutral
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class SummaryRow:
    """One line of the summary table (all cells are display strings).

    Attributes:
        group: speech / identity / emotion / background / stability / container / faces.
        metric: what is measured.
        input, output: the value for each clip ("" when it is a comparison only).
        comparison: the value comparing both (r, distance, ratio, difference).
        guide: the pass mark, e.g. ``">= 0.90"``.
        status: ``"ok"``, ``"check"`` (misses the guide) or ``""`` (no guide / n/a).
    """

    group: str
    metric: str
    input: str
    output: str
    comparison: str
    guide: str
    status: str


def _fmt(value: float | int | None, spec: str = ".3f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return format(value, spec)


def _status(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "check")


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _container_rows(result: EvaluationResult) -> list[SummaryRow]:
    c = result.container
    i, o = c.input, c.output
    frame_s = 1.0 / i.fps
    rows = [
        SummaryRow("container", "frames", str(i.frame_count), str(o.frame_count),
                   "equal" if c.frame_count_equal else "differ", "equal", _status(c.frame_count_equal)),
        SummaryRow("container", "fps", i.fps_exact, o.fps_exact,
                   "equal" if c.fps_equal else "differ", "equal", _status(c.fps_equal)),
        SummaryRow("container", "resolution", f"{i.width}x{i.height}", f"{o.width}x{o.height}",
                   "equal" if c.resolution_equal else "differ", "equal", _status(c.resolution_equal)),
        SummaryRow("container", "audio", "present" if i.has_audio else "absent",
                   "present" if o.has_audio else "absent",
                   "equal" if c.audio_presence_equal else "differ", "equal", _status(c.audio_presence_equal)),
    ]
    if i.has_audio and o.has_audio:
        diff = c.audio_duration_diff_s
        rows.append(SummaryRow(
            "container", "audio duration s", _fmt(i.audio_duration_s), _fmt(o.audio_duration_s),
            f"{_fmt(diff, '+.3f')} s", f"|diff| <= {frame_s:.3f}",
            _status(abs(diff) <= frame_s + 1e-6 if diff is not None else None)))
        shift = c.audio_shift_s
        rows.append(SummaryRow(
            "container", "audio start / shift s", _fmt(i.audio_start_s, "+.3f"), _fmt(o.audio_start_s, "+.3f"),
            f"shift {_fmt(shift, '+.3f')} s", f"|shift| <= {frame_s:.3f}", _status(c.audio_in_sync)))
    return rows


def summary_rows(result: EvaluationResult) -> list[SummaryRow]:
    """The numbers a reviewer reads first, with their pass marks (see :data:`GUIDES`)."""
    sp, idt, em, bg, tm, cov = (result.speech, result.identity, result.emotion,
                                result.background, result.temporal, result.coverage)
    n = cov.frames_analysed
    rows = _container_rows(result)
    rows.append(SummaryRow("faces", "frames with a face", f"{cov.faces_in}/{n}", f"{cov.faces_out}/{n}",
                           "", "all", _status(cov.faces_out >= cov.faces_in)))
    r_ok = sp.aperture_r >= GUIDES["aperture_r_min"] if _finite(sp.aperture_r) else None
    rows.append(SummaryRow("speech", "mouth aperture (mean)", _fmt(sp.aperture_mean_in), _fmt(sp.aperture_mean_out),
                           f"r {_fmt(sp.aperture_r)}, |diff| {_fmt(sp.aperture_mad)}",
                           f"r >= {GUIDES['aperture_r_min']:.2f}", _status(r_ok)))
    id_ok = idt.mean_distance <= GUIDES["identity_mean_max"] if _finite(idt.mean_distance) else None
    rows.append(SummaryRow("identity", "embedding distance", "", "",
                           f"mean {_fmt(idt.mean_distance)}, max {_fmt(idt.max_distance)} ({idt.frames} fr)",
                           f"mean <= {GUIDES['identity_mean_max']:.2f}", _status(id_ok)))
    if em.target is not None:
        label = em.fer_label or "n/a"
        up = em.accuracy_out >= em.accuracy_in if _finite(em.accuracy_in) and _finite(em.accuracy_out) else None
        rows.append(SummaryRow("emotion", f"{em.target} rate (FER '{label}')", _fmt(em.accuracy_in, ".2f"),
                               _fmt(em.accuracy_out, ".2f"),
                               f"{_fmt(em.accuracy_out - em.accuracy_in, '+.2f')}" if up is not None else "n/a",
                               "edited >= input", _status(up)))
        rows.append(SummaryRow("emotion", f"mean P({label})", _fmt(em.mean_prob_in, ".2f"),
                               _fmt(em.mean_prob_out, ".2f"), "", "", ""))
    rows.append(SummaryRow("emotion", "top FER class", em.top_in or "n/a", em.top_out or "n/a", "", "", ""))
    bg_ok = bg.psnr_db >= GUIDES["background_psnr_min_db"] if _finite(bg.psnr_db) else None
    rows.append(SummaryRow("background", "PSNR outside face dB", "", "",
                           f"{_fmt(bg.psnr_db, '.1f')} (worst frame {_fmt(bg.min_psnr_db, '.1f')})",
                           f">= {GUIDES['background_psnr_min_db']:.0f}", _status(bg_ok)))
    j_ok = tm.jitter_ratio <= GUIDES["jitter_ratio_max"] if _finite(tm.jitter_ratio) else None
    rows.append(SummaryRow("stability", "landmark jitter", _fmt(tm.jitter_in, ".4f"), _fmt(tm.jitter_out, ".4f"),
                           f"ratio {_fmt(tm.jitter_ratio, '.2f')}",
                           f"ratio <= {GUIDES['jitter_ratio_max']:.1f}", _status(j_ok)))
    f_ok = tm.flicker_ratio <= GUIDES["flicker_ratio_max"] if _finite(tm.flicker_ratio) else None
    rows.append(SummaryRow("stability", "face flicker (grey levels)", _fmt(tm.flicker_in, ".2f"),
                           _fmt(tm.flicker_out, ".2f"), f"ratio {_fmt(tm.flicker_ratio, '.2f')}",
                           f"ratio <= {GUIDES['flicker_ratio_max']:.1f}", _status(f_ok)))
    return rows


_HEADER = ("metric", "input", "edited", "comparison", "guide", "")


def verdict(rows: Sequence[SummaryRow]) -> str:
    """One line: how many rows meet their guide and which do not."""
    ok = sum(r.status == "ok" for r in rows)
    bad = [f"{r.group}: {r.metric}" for r in rows if r.status == "check"]
    return f"{ok} ok, {len(bad)} to check" + (f" ({'; '.join(bad)})" if bad else "")


def _cells(row: SummaryRow) -> tuple[str, ...]:
    return (f"{row.group}: {row.metric}", row.input, row.output, row.comparison, row.guide, row.status)


def format_table(rows: Sequence[SummaryRow]) -> str:
    """Plain-text table of the rows (what the command prints)."""
    cells = [_HEADER] + [_cells(r) for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(len(_HEADER))]
    lines = ["  ".join(c[k].ljust(widths[k]) for k in range(len(c))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- drawing
@dataclass(frozen=True)
class Curve:
    """One curve of :func:`line_plot`: ``y`` ``(T,)`` (NaN breaks the line)."""

    label: str
    y: np.ndarray
    colour: tuple[int, int, int]
    thickness: int = 2
    dots: bool = False


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          colour: tuple[int, int, int] = _INK, thickness: int = 1) -> int:
    """Draw text with its baseline at ``org``; returns the text width in pixels."""
    cv2.putText(img, text, (int(org[0]), int(org[1])), _FONT, scale, colour, thickness, cv2.LINE_AA)
    return cv2.getTextSize(text, _FONT, scale, thickness)[0][0]


def _nice_range(values: Sequence[np.ndarray], y_range: tuple[float, float] | None) -> tuple[float, float]:
    if y_range is not None:
        return y_range
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.1 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 0.05)
    return lo - pad, hi + pad


def _nice_ticks(lo: float, hi: float, count: int) -> np.ndarray:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of 10) in [lo, hi]."""
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step
    return np.round(ticks, 10)


def line_plot(
    x: np.ndarray,
    curves: Sequence[Curve],
    *,
    title: str,
    size: tuple[int, int] = (1200, 220),
    y_range: tuple[float, float] | None = None,
    hlines: Sequence[tuple[float, str]] = (),
    x_label: str = "s",
) -> np.ndarray:
    """A line chart with axes, grid, tick labels and a legend.

    Args:
        x: ``(T,)`` abscissae (e.g. seconds).
        curves: the curves, drawn in order.
        title: drawn top-left.
        size: ``(width, height)`` pixels.
        y_range: fixed ``(min, max)``; None fits the data.
        hlines: ``(y, label)`` dashed reference lines (e.g. a pass mark).
        x_label: unit shown after the last x tick.

    Returns:
        ``(height, width, 3) uint8`` RGB.
    """
    check_array(np.asarray(x), "T", name="x")
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 64, 16, 28, 26
    pw, ph = width - left - right, height - top - bottom
    x = np.asarray(x, np.float64)
    x0, x1 = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1.0
    y0, y1 = _nice_range([np.asarray(c.y, np.float64) for c in curves], y_range)

    def px(xv: np.ndarray, yv: np.ndarray) -> np.ndarray:
        return np.stack([left + (xv - x0) / (x1 - x0) * pw, top + (1 - (yv - y0) / (y1 - y0)) * ph], axis=-1)

    for yv in _nice_ticks(y0, y1, 6):
        yy = int(round(top + (1 - (yv - y0) / (y1 - y0)) * ph))
        cv2.line(img, (left, yy), (left + pw, yy), _GRID, 1)
        _text(img, f"{yv:.2f}", (4, yy + 4), 0.38)
    x_ticks = _nice_ticks(x0, x1, 8)
    for i, xv in enumerate(x_ticks):
        xx = int(round(left + (xv - x0) / (x1 - x0) * pw))
        cv2.line(img, (xx, top), (xx, top + ph), _GRID, 1)
        _text(img, f"{xv:g}{x_label if i == len(x_ticks) - 1 else ''}", (xx - 8, height - 8), 0.38)
    for yv, label in hlines:
        if y0 <= yv <= y1:
            yy = int(round(top + (1 - (yv - y0) / (y1 - y0)) * ph))
            for xs in range(left, left + pw, 12):
                cv2.line(img, (xs, yy), (min(xs + 6, left + pw), yy), (120, 120, 120), 1)
            _text(img, label, (left + pw - 8 - cv2.getTextSize(label, _FONT, 0.38, 1)[0][0], yy - 4), 0.38)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (160, 160, 160), 1)
    for c in curves:
        pts = px(x, np.asarray(c.y, np.float64))
        ok = np.isfinite(pts).all(axis=1)
        if c.dots:
            for p in pts[ok]:
                cv2.circle(img, tuple(int(v) for v in np.round(p)), 3, c.colour, -1, cv2.LINE_AA)
            continue
        runs = np.split(np.arange(len(pts)), np.flatnonzero(~ok))
        for run in runs:
            run = run[ok[run]]
            if run.size >= 2:
                poly = np.round(pts[run] * 8).astype(np.int32)
                cv2.polylines(img, [poly], False, c.colour, c.thickness, cv2.LINE_AA, shift=3)
            elif run.size == 1:
                cv2.circle(img, tuple(int(v) for v in np.round(pts[run[0]])), 2, c.colour, -1)
    _text(img, title, (left, 18), 0.5, thickness=1)
    lx = width - right
    for c in reversed(curves):
        w = cv2.getTextSize(c.label, _FONT, 0.42, 1)[0][0]
        lx -= w + 30
        cv2.line(img, (lx, 13), (lx + 18, 13), c.colour, 3)
        _text(img, c.label, (lx + 22, 18), 0.42)
    return img


def class_strip(probs: np.ndarray, width: int, height: int = 14) -> np.ndarray:
    """A strip coloured by each frame's top FER class (:data:`CLASS_COLOURS`; grey: no face).

    Args:
        probs: ``(T, 7)`` probabilities, NaN rows for frames without a face.
        width, height: strip size in pixels.

    Returns:
        ``(height, width, 3) uint8`` RGB.
    """
    check_array(probs, f"T {len(FER_LABELS)}", name="probs")
    colours = np.array(CLASS_COLOURS + ((80, 80, 80),), np.uint8)
    valid = np.isfinite(probs).all(axis=1)
    top = np.where(valid, np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1), len(FER_LABELS))
    if top.size == 0:
        return np.full((height, width, 3), 80, np.uint8)
    cols = top[np.minimum((np.arange(width) * top.size) // width, top.size - 1)]
    return np.repeat(colours[cols][None], height, axis=0)


def _emotion_figure(result: EvaluationResult, width: int) -> np.ndarray:
    s, em = result.series, result.emotion
    label = em.fer_label or em.top_out or "neutral"
    k = FER_LABELS.index(label)
    what = f"target '{em.target}'" if em.fer_label else f"edited clip's top class '{label}'"
    plot = line_plot(
        s.time_s,
        [Curve("input", s.probs_in[:, k], _INPUT_COLOUR, 3), Curve("edited", s.probs_out[:, k], _OUTPUT_COLOUR)],
        title=f"FER2013 probability of '{label}' per frame ({what})",
        size=(width, 200),
        y_range=(0.0, 1.0),
    )
    left, pw = 64, width - 64 - 16
    strips = np.full((64, width, 3), 255, np.uint8)
    for row, (name, probs) in enumerate((("input", s.probs_in), ("edited", s.probs_out))):
        y = 4 + row * 20
        strips[y:y + 14, left:left + pw] = class_strip(probs, pw)
        _text(strips, name, (4, y + 11), 0.38)
    x = left
    for name, colour in zip(FER_LABELS, CLASS_COLOURS):
        cv2.rectangle(strips, (x, 48), (x + 12, 60), colour, -1)
        x += 16 + _text(strips, name, (x + 16, 59), 0.38) + 14
    _text(strips, "top class per frame", (x + 10, 59), 0.38, (110, 110, 110))
    return np.vstack([plot, strips])


def figures(result: EvaluationResult, width: int = 1200) -> dict[str, np.ndarray]:
    """The report's figures: ``contact``, ``emotion``, ``aperture``, ``identity`` (RGB)."""
    s = result.series
    out = {"contact": contact_sheet(result, width)} if result.contact else {}
    out["emotion"] = _emotion_figure(result, width)
    out["aperture"] = line_plot(
        s.time_s,
        [Curve("input", s.aperture_in, _INPUT_COLOUR, 3), Curve("edited", s.aperture_out, _OUTPUT_COLOUR)],
        title=f"mouth aperture (dlib inner lips / eye distance), r = {_fmt(result.speech.aperture_r)}",
        size=(width, 200),
    )
    ids = s.identity_distance
    top = max(0.8, float(np.nanmax(ids)) * 1.1) if np.isfinite(ids).any() else 0.8
    out["identity"] = line_plot(
        s.time_s,
        [Curve("edited vs input", ids, _OUTPUT_COLOUR, dots=True)],
        title="identity: dlib embedding distance on sampled frames (same person < 0.6)",
        size=(width, 160),
        y_range=(0.0, top),
        hlines=[(GUIDES["identity_mean_max"], f"guide {GUIDES['identity_mean_max']}"), (0.6, "dlib same-person 0.6")],
    )
    return out


def contact_sheet(result: EvaluationResult, width: int = 1200) -> np.ndarray:
    """Input (top) and edited (bottom) face crops side by side for the sampled frames.

    Returns:
        ``(H, width, 3) uint8`` RGB (empty band when there are no contact frames).
    """
    frames = result.contact
    if not frames:
        return np.full((40, width, 3), 255, np.uint8)
    gap, label_h, left = 6, 18, 64
    n = len(frames)
    tile = min(frames[0].input_rgb.shape[0], (width - left - gap * (n - 1)) // n)
    height = label_h + 2 * tile + gap
    sheet = np.full((height, width, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        x = left + i * (tile + gap)
        _text(sheet, f"frame {frame.index}  {frame.time_s:.2f} s", (x, 13), 0.4)
        for row, rgb in enumerate((frame.input_rgb, frame.output_rgb)):
            y = label_h + row * (tile + gap)
            sheet[y:y + tile, x:x + tile] = cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA)
    _text(sheet, "input", (4, label_h + tile // 2), 0.42)
    _text(sheet, "edited", (4, label_h + tile + gap + tile // 2), 0.42)
    return sheet


# ----------------------------------------------------------------------------- PNG
def _table_image(rows: Sequence[SummaryRow], width: int) -> np.ndarray:
    cells = [_HEADER] + [_cells(r) for r in rows]
    scale = 0.42
    widths = [max(cv2.getTextSize(c[k], _FONT, scale, 1)[0][0] for c in cells) + 18 for k in range(len(_HEADER))]
    line_h = 19
    img = np.full((line_h * len(cells) + 8, width, 3), 255, np.uint8)
    for r, c in enumerate(cells):
        y = 14 + r * line_h
        if r % 2 == 0 and r > 0:
            img[y - 13:y + 6] = 246
        x = 8
        for k, text in enumerate(c):
            colour = _INK
            if k == len(c) - 1 and text:
                colour = _OK if text == "ok" else _BAD
            _text(img, text, (x, y), scale, colour, 2 if r == 0 else 1)
            x += widths[k]
    return img


def _header_image(result: EvaluationResult, width: int) -> np.ndarray:
    lines = [
        (f"ned evaluate {__version__}   input: {Path(result.input_path).name}   "
         f"edited: {Path(result.edited_path).name}", _INK, 0.55),
        (f"target emotion: {result.emotion.target or 'none'}   frames compared: {result.frames_compared}, "
         f"analysed: {result.coverage.frames_analysed} (stride {result.options.stride})   "
         f"time: {result.elapsed_s:.1f} s", (90, 90, 90), 0.45),
    ]
    rows = summary_rows(result)
    lines.append((f"guides: {verdict(rows)}", _BAD if any(r.status == "check" for r in rows) else _OK, 0.45))
    lines += [(f"warning: {w}", _BAD, 0.45) for w in result.warnings]
    img = np.full((14 + 24 * len(lines), width, 3), 255, np.uint8)
    for i, (text, colour, scale) in enumerate(lines):
        _text(img, text, (8, 24 + 24 * i), scale, colour, 1)
    return img


def render_summary_png(result: EvaluationResult, width: int = 1200) -> np.ndarray:
    """The whole report as one image: header, table, contact sheet, curves.

    Returns:
        ``(H, width, 3) uint8`` RGB.
    """
    parts = [_header_image(result, width), _table_image(summary_rows(result), width)]
    for fig in figures(result, width).values():
        parts += [np.full((10, width, 3), 255, np.uint8), fig]
    return np.vstack(parts)


# ----------------------------------------------------------------------------- HTML
def _png_b64(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - PNG encoding of a valid image does not fail
        raise OutputError("could not encode a report image as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1e1e1e;max-width:1240px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
.meta{color:#666;font-size:13px} .warn{color:#b42318;font-size:14px;margin:4px 0}
table{border-collapse:collapse;font-size:13px;margin-top:8px}
td,th{padding:4px 10px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr.group td{background:#fafafa;font-weight:600}
.ok{color:#1e8c3c;font-weight:600} .check{color:#c82828;font-weight:600}
img{max-width:100%;display:block;margin:4px 0} .note{font-size:13px;color:#444;max-width:900px}
"""

_HOW_TO_READ = """
<ul class="note">
<li><b>speech</b>: mouth aperture from dlib's 68 landmarks (inner-lip gap / eye distance);
the edited clip should open and close its mouth with the input (r close to 1).</li>
<li><b>identity</b>: distance of dlib face-recognition embeddings, input vs edited frame
(0 = identical; dlib calls &lt; 0.6 the same person).</li>
<li><b>emotion</b>: the FER2013 classifier on dlib's face box; <i>rate</i> = fraction of frames
whose top class is the target. Compare with the rate on real acted footage of that emotion.</li>
<li><b>background</b>: PSNR outside the dilated face region (inf = bit-identical).</li>
<li><b>stability</b>: ratios edited / input of landmark jitter (second difference) and of the
frame-to-frame change inside the face region; 1 = as stable as the input.</li>
</ul>
"""


def render_html(result: EvaluationResult) -> str:
    """The self-contained HTML report (images embedded as base64 PNG)."""
    esc = html.escape
    rows = summary_rows(result)
    checks = any(r.status == "check" for r in rows)
    rows_html = []
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            rows_html.append(f'<tr class="group"><td colspan="6">{esc(group)}</td></tr>')
        status = f'<span class="{row.status}">{esc(row.status)}</span>' if row.status else ""
        rows_html.append(
            f"<tr><td>{esc(row.metric)}</td><td>{esc(row.input)}</td><td>{esc(row.output)}</td>"
            f"<td>{esc(row.comparison)}</td><td>{esc(row.guide)}</td><td>{status}</td></tr>"
        )
    figs = figures(result)
    captions = {
        "contact": "Contact sheet: the same crop around the input's face, input (top) and edited (bottom)",
        "emotion": "Emotion over time",
        "aperture": "Speech: mouth aperture over time",
        "identity": "Identity over time",
    }
    fig_html = "".join(
        f'<h2>{esc(captions[name])}</h2><img alt="{esc(name)}" src="data:image/png;base64,{_png_b64(img)}">'
        for name, img in figs.items()
    )
    warnings = "".join(f'<div class="warn">warning: {esc(w)}</div>' for w in result.warnings)
    em = result.emotion
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ned evaluate: {esc(Path(result.edited_path).name)}</title>
<style>{_CSS}</style></head><body>
<h1>ned evaluate: {esc(Path(result.edited_path).name)}</h1>
<div class="meta">input {esc(result.input_path)}<br>edited {esc(result.edited_path)}<br>
target emotion: {esc(em.target or 'none')} &middot; frames compared {result.frames_compared},
analysed {result.coverage.frames_analysed} (stride {result.options.stride}) &middot;
{result.elapsed_s:.1f} s &middot; ned {esc(__version__)}</div>
<div class="{'warn' if checks else 'ok'}">guides: {esc(verdict(rows))}</div>
{warnings}
<h2>Numbers</h2>
<table><tr><th>metric</th><th>input</th><th>edited</th><th>comparison</th><th>guide</th><th></th></tr>
{''.join(rows_html)}</table>
{fig_html}
<h2>How to read this</h2>{_HOW_TO_READ}
</body></html>
"""


# ----------------------------------------------------------------------------- files
def _atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically (:func:`ned.layout.atomic_write_bytes`).

    Raises:
        OutputError: ``path`` is a folder, or it cannot be created or written.
    """
    final = Path(path).expanduser()
    if final.is_dir():
        raise OutputError(f"{final}: is a folder; give a file name")
    try:
        return atomic_write_bytes(final, data)
    except OSError as err:
        raise OutputError(f"{final}: cannot write ({err.strerror or err}); choose another path") from err


def write_json(result: EvaluationResult, path: str | os.PathLike, include_series: bool = True) -> Path:
    """Write ``result.to_dict()`` as JSON (standard JSON: no NaN/Infinity tokens).

    Raises:
        OutputError: the file cannot be written.
    """
    text = json.dumps(result.to_dict(include_series=include_series), indent=2, allow_nan=False)
    return _atomic_write(path, (text + "\n").encode("utf-8"))


def write_html(result: EvaluationResult, path: str | os.PathLike) -> Path:
    """Write the self-contained HTML report.

    Raises:
        OutputError: the file cannot be written.
    """
    return _atomic_write(path, render_html(result).encode("utf-8"))


def write_png(result: EvaluationResult, path: str | os.PathLike) -> Path:
    """Write the PNG summary (:func:`render_summary_png`).

    Raises:
        OutputError: the file cannot be written.
    """
    ok, buf = cv2.imencode(".png", cv2.cvtColor(render_summary_png(result), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise OutputError(f"{path}: could not encode the PNG summary")
    return _atomic_write(path, buf.tobytes())
