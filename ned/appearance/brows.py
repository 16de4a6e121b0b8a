"""Brow motion the face mesh misses, measured on a reference actor and added to an edit.

MediaPipe's mesh follows the eyebrows loosely: in the mesh's texture space (where a point
of the mesh stays put whatever the expression) a reference actor's brows still move
between the neutral and the emotion frames. On the MEAD crops (dense optical flow between
the textures, median over each clip) W009's inner brows rise 0.05-0.06 IOD and draw
together in sadness while the outer ends drop 0.03 (the oblique "grief" brow), M030's
inner brows drop 0.08-0.09 IOD in anger and rise 0.07-0.085 in surprise and fear. The
rig's weights, fitted to the mesh, hold none of that, so an edit that copies the weights
keeps the target's own brow shape. Here:

- :func:`brow_offset` measures it on one reference frame: the flow of the emotion
  texture against the neutral one (luminance, :func:`texture_flow`), its median in a small
  patch at each brow vertex, less the median at the rigid vertices (eye corners, nose
  bridge: what misregistration moves everything by), clamped to :data:`MAX_OFFSET_IOD`,
  spread to the forehead and brow-lid fold around with a fall-off over
  :data:`FALLOFF_IOD` (never to the eyelids or the face outline, which other steps own);
- :func:`with_brow_offsets` measures every kept frame of a reference clip and smooths the
  result over :data:`SMOOTH_FRAMES` kept frames;
- exemplar banks store each exemplar's offset (:mod:`ned.appearance.exemplars`);
- label mode adds each emotion's calibrated brow shape (``ned/data/brow_offsets.json``,
  the same measurement over real acted clips, written by ``scripts/calibrate_brows.py``:
  pooled over the MEAD crops the inner brows drop 0.023 IOD in anger and rise 0.027 in
  fear and 0.026 in surprise; in sadness they rise 0.009 while the outer ends drop 0.009),
  :func:`load_label_brows`;
- :func:`frame_brow_offsets` picks each edited frame's offset (its reference frame's, the
  blend of the bank's exemplars that lend it detail, or its emotion's calibrated one),
  scaled by how much of that emotion change the frame takes
  (:func:`ned.appearance.hook.detail_weight`), and :func:`add_brow_motion` moves the
  edit's destination landmarks by it (pose-aware).

The offsets are in canonical units (IOD, ``x`` right, ``y`` down): texture space is a
frontal, isotropic projection of the canonical mesh.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from ned.appearance.hook import AppearanceFrame, ExpressionAppearance, ReferenceFrame, detail_weight, emotion_delta
from ned.appearance.ratio import luminance_uv
from ned.appearance.texture import UVRaster
from ned.errors import InputError, ModelFileError
from ned.manipulate.emotions import EmotionTargets, canonical_emotion
from ned.morph.fit import pose_displacement
from ned.morph.topology import NUM_VERTICES, Topology, load_topology
from ned.types import check_array

__all__ = ["MAX_OFFSET_IOD", "FALLOFF_IOD", "SMOOTH_FRAMES", "texture_flow", "brow_vertex_offsets", "brow_vertices",
           "spread_brows", "brow_offset", "with_brow_offsets",
           "LabelBrows", "label_brows_path", "load_label_brows", "frame_brow_offsets", "add_brow_motion",
           "with_brow_motion"]

#: the largest brow offset taken from a reference (IOD). Brow shape is much of what makes a
#: face look like somebody: W009 acting like M030's disgust moved dlib's identity embedding
#: 0.330 -> 0.382 with his offsets whole (up to 0.09 IOD), 0.355 capped at 0.05.
MAX_OFFSET_IOD = 0.05
#: how far (IOD, in texture space) from the brows the offset fades to zero
FALLOFF_IOD = 0.3
#: half-size of the patch whose median flow is a brow vertex's offset (IOD)
PATCH_IOD = 0.04
#: kept reference frames averaged (centred) to smooth the offsets over time
SMOOTH_FRAMES = 5
_BROW_GROUPS = ("brow_r", "brow_l")
_STILL_GROUPS = ("eye_r", "eye_l", "eye_r_upper", "eye_l_upper", "eye_r_lower", "eye_l_lower",
                 "face_oval", "face_outline")


def texture_flow(neutral: np.ndarray, emotion: np.ndarray, iod_texels: float) -> np.ndarray:
    """Dense optical flow (Farneback) from a neutral luminance texture to an emotion one,
    on their detail (each less its blur: lighting that changed between them is not motion).

    Args:
        neutral, emotion: ``(S, S)`` luminance textures in [0, 1] (:func:`luminance_uv`).
        iod_texels: the IOD in texels (sets the window: about 0.2 IOD).

    Returns:
        ``(S, S, 2) float32`` texels: content at ``p`` in ``neutral`` is at ``p + flow[p]``
        in ``emotion`` (``x`` right, ``y`` down).
    """
    check_array(np.asarray(neutral), "H W", name="neutral")
    check_array(np.asarray(emotion), f"{np.shape(neutral)[0]} {np.shape(neutral)[1]}", name="emotion")
    u8 = [_detail_u8(t, iod_texels) for t in (neutral, emotion)]
    window = max(5, int(round(0.2 * iod_texels)) | 1)
    return cv2.calcOpticalFlowFarneback(u8[0], u8[1], None, 0.5, 3, window, 5, 5, 1.2, 0)


def _detail_u8(texture: np.ndarray, iod_texels: float) -> np.ndarray:
    """``(H, W) uint8`` a texture's detail: less its blur over 0.15 IOD (so a change of
    lighting between the two frames is not read as motion), x3 around mid-grey."""
    t = np.asarray(texture, np.float32)
    detail = t - cv2.GaussianBlur(t, (0, 0), 0.15 * iod_texels)
    return np.clip(127.5 + 3.0 * 255.0 * detail, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _layout(raster: UVRaster, topology: Topology) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brow vertex ids ``(B,)``, rigid vertex ids ``(R,)`` and the spread matrix ``(468, B)``
    (row ``v``: how vertex ``v`` follows each brow vertex; rows sum to its fall-off)."""
    brows = brow_vertices(topology)
    rigid = np.asarray(topology.group("rigid"), np.int64)
    uv = raster.uv_px / raster.iod_texels  # IOD
    dist = np.linalg.norm(uv[:, None, :] - uv[None, brows, :], axis=-1)  # (468, B)
    near = np.exp(-0.5 * (dist / 0.08) ** 2)
    near /= near.sum(axis=1, keepdims=True)
    falloff = np.clip(1.0 - dist.min(axis=1) / FALLOFF_IOD, 0.0, 1.0) ** 2
    still = np.unique(np.concatenate([topology.group(g) for g in _STILL_GROUPS]))
    falloff[still] = 0.0
    falloff[brows] = 1.0
    spread = (near * falloff[:, None]).astype(np.float32)
    for arr in (brows, rigid, spread):
        arr.setflags(write=False)
    return brows, rigid, spread


def _patch_median(flow: np.ndarray, centres: np.ndarray, half: int) -> np.ndarray:
    """Median flow ``(N, 2)`` in square patches of half-size ``half`` around texel centres ``(N, 2)``."""
    h, w = flow.shape[:2]
    out = np.zeros((len(centres), 2), np.float32)
    for i, (x, y) in enumerate(np.round(centres).astype(int)):
        patch = flow[max(y - half, 0):min(y + half + 1, h), max(x - half, 0):min(x + half + 1, w)]
        out[i] = np.median(patch.reshape(-1, 2), axis=0) if patch.size else 0.0
    return out


def brow_vertex_offsets(neutral_texture: np.ndarray, emotion_texture: np.ndarray, raster: UVRaster,
                        topology: Topology | None = None) -> np.ndarray:
    """How a frame's brows moved against its mesh, at the brow vertices only.

    Args:
        neutral_texture, emotion_texture: ``(S, S)`` luminance textures of the actor's
            neutral face (e.g. a per-texel median of several) and of the emotion frame.
        raster: texture tables of size ``S``.
        topology: default the packaged one.

    Returns:
        ``(B, 2) float32`` canonical offsets (IOD, ``x`` right, ``y`` down) of
        :func:`brow_vertices`, each at most :data:`MAX_OFFSET_IOD` long.
    """
    topology = topology or load_topology()
    brows, rigid, _ = _layout(raster, topology)
    # only the rows down to the lowest vertex read (the nose bridge) and half an IOD more, so
    # that the flow there does not feel the cut (about 0.7 of the texture at S = 192)
    rows = min(raster.size, int(np.ceil(raster.uv_px[np.concatenate([brows, rigid]), 1].max() + 0.5 * raster.iod_texels)))
    flow = texture_flow(np.asarray(neutral_texture)[:rows], np.asarray(emotion_texture)[:rows], raster.iod_texels)
    half = max(1, int(round(PATCH_IOD * raster.iod_texels)))
    at_brows = _patch_median(flow, raster.uv_px[brows], half)
    drift = np.median(_patch_median(flow, raster.uv_px[rigid], half), axis=0)
    offsets = (at_brows - drift) / np.float32(raster.iod_texels)
    size = np.linalg.norm(offsets, axis=1, keepdims=True)
    return (offsets * np.minimum(1.0, MAX_OFFSET_IOD / np.maximum(size, 1e-9))).astype(np.float32)


def brow_vertices(topology: Topology | None = None) -> np.ndarray:
    """``(B,) int64`` the brow vertices whose offsets are measured (both brows' rows, sorted)."""
    topology = topology or load_topology()
    return np.unique(np.concatenate([topology.group(g) for g in _BROW_GROUPS])).astype(np.int64)


def spread_brows(offsets: np.ndarray, raster: UVRaster, topology: Topology | None = None) -> np.ndarray:
    """Brow-vertex offsets ``(B, 2)`` spread to the forehead and brow-lid fold around them
    (fading over :data:`FALLOFF_IOD`, none on the lids and the face outline): ``(468, 2) float32``."""
    _, _, spread = _layout(raster, topology or load_topology())
    check_array(np.asarray(offsets), f"{spread.shape[1]} 2", name="offsets")
    return (spread @ np.asarray(offsets, np.float32)).astype(np.float32)


def brow_offset(neutral_texture: np.ndarray, emotion_texture: np.ndarray, raster: UVRaster,
                topology: Topology | None = None) -> np.ndarray:
    """How a reference frame's brows moved against its mesh, relative to its neutral face
    (:func:`brow_vertex_offsets`, :func:`spread_brows`).

    Returns:
        ``(468, 2) float32`` canonical offsets (IOD, ``x`` right, ``y`` down); zero away from
        the brows and on the eyelids and face outline.
    """
    return spread_brows(brow_vertex_offsets(neutral_texture, emotion_texture, raster, topology), raster, topology)


def with_brow_offsets(frames: Sequence[ReferenceFrame], neutral: Sequence[ReferenceFrame], raster: UVRaster,
                      topology: Topology | None = None) -> tuple[ReferenceFrame, ...]:
    """A reference clip's kept frames (in time order) with ``brow_offset`` measured against
    its neutral frames and smoothed over :data:`SMOOTH_FRAMES` (unchanged without neutral frames)."""
    if not neutral or not frames:
        return tuple(frames)
    base = np.median(np.stack([luminance_uv(r.image, r.points, raster) for r in neutral]), axis=0).astype(np.float32)
    offsets = np.stack([brow_offset(base, luminance_uv(f.image, f.points, raster), raster, topology) for f in frames])
    offsets = uniform_filter1d(offsets, SMOOTH_FRAMES, axis=0, mode="nearest")  # centred, edge-replicated
    return tuple(dataclasses.replace(f, brow_offset=o) for f, o in zip(frames, offsets))


@dataclass(frozen=True)
class LabelBrows:
    """Each emotion's calibrated brow shape, for label mode (:func:`load_label_brows`).

    Attributes:
        offsets: emotion -> ``(468, 2) float32`` spread offsets (canonical IOD).
        targets: emotion -> ``(K,) float32`` the emotion change they belong to (the label
            targets' offset): a frame that takes part of it gets that part of the shape.
    """

    offsets: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]


def label_brows_path() -> Path:
    """Path of the packaged ``brow_offsets.json`` (``scripts/calibrate_brows.py``)."""
    return Path(str(resources.files("ned") / "data" / "brow_offsets.json"))


def load_label_brows(targets: EmotionTargets, raster: UVRaster, path: str | Path | None = None) -> LabelBrows:
    """The calibrated brow shapes of label mode, spread to the forehead (:func:`spread_brows`).

    Args:
        targets: the label targets (their offsets weigh each frame's share of the shape).
        raster: texture tables (for the spread).
        path: default the packaged file.

    Raises:
        ModelFileError: a missing or malformed file, or one measured on other brow vertices.
    """
    p = Path(path) if path is not None else label_brows_path()
    try:
        data = json.loads(p.read_text())
        vertices = [int(v) for v in data["vertices"]]
        tables = {canonical_emotion(e): np.asarray(v, np.float32) for e, v in data["emotions"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, InputError) as err:
        raise ModelFileError(f"{p}: not a brow-offsets file ({err}); rerun `python scripts/calibrate_brows.py`") from err
    if vertices != brow_vertices().tolist() or any(t.shape != (len(vertices), 2) or not np.isfinite(t).all()
                                                   for t in tables.values()):
        raise ModelFileError(f"{p}: measured on other brow vertices or malformed; rerun `python scripts/calibrate_brows.py`")
    return LabelBrows({e: spread_brows(t, raster) for e, t in tables.items()},
                      {e: targets.offset(e) for e in tables if e in targets.offsets})


def frame_brow_offsets(payloads: Callable[[int], AppearanceFrame], num_frames: int,
                       appearance: ExpressionAppearance, label: LabelBrows | None = None) -> np.ndarray | None:
    """Per target frame, the brow offset of what lends it detail, times how much of that
    emotion change the frame takes (:func:`ned.appearance.hook.detail_weight`; 1 when the
    reference's weights are unknown).

    What lends it: its reference frame, else the exemplars of ``appearance.bank`` that
    :meth:`ExemplarBank.blend` picks (both in the ``auto`` and ``reference`` modes), else
    the calibrated shape of the frame's emotion, ``label`` (``auto`` and ``maps``: like the
    built-in maps).

    Args:
        payloads: the edit's per-frame :class:`AppearanceFrame` (as given to the renderer).
        num_frames: T.
        appearance: the edit's appearance step (its mode, bank and reference neutral).
        label: the calibrated brow shapes (label mode), or None.

    Returns:
        ``(T, 468, 2) float32`` canonical IOD, or None when no frame has an offset.
    """
    mode = appearance.options.mode
    lends, builtin = mode in ("auto", "reference"), mode in ("auto", "maps")
    bank, neutral = appearance.bank, appearance.neutral_expression
    out = np.zeros((num_frames, NUM_VERTICES, 2), np.float32)
    found = False
    for t in range(num_frames):
        p = payloads(t)
        delta = emotion_delta(p.source_expression, p.target_expression)
        ref = p.reference
        if ref is not None and lends:
            offset = ref.brow_offset
            lent = emotion_delta(neutral, ref.expression) if ref.expression is not None and neutral is not None else None
        elif ref is None and bank is not None and len(bank) and lends:
            offset, lent = bank.blend_brows(delta, p.emotion, appearance.options.exemplars)
        elif ref is None and label is not None and builtin and p.emotion in label.targets:
            offset, lent = label.offsets[p.emotion], label.targets[p.emotion]
        else:
            continue
        if offset is None:
            continue
        found = True
        out[t] = np.float32(1.0 if lent is None else detail_weight(delta, lent)) * offset
    return out if found else None


def add_brow_motion(landmarks: np.ndarray, offsets: np.ndarray, rotation: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Move landmarks by canonical brow offsets through each frame's pose.

    Args:
        landmarks: ``(T, N >= 468, 3)`` frame pixels (NaN rows where no face stay NaN).
        offsets: ``(T, 468, 2)`` canonical IOD (:func:`frame_brow_offsets`).
        rotation: ``(T, 3, 3)`` and scale ``(T,)``: canonical -> frame (the fits' poses).

    Returns:
        ``(T, N, 3) float32``; only the first 468 points move.
    """
    lm = np.array(landmarks, np.float32, copy=True)
    t = len(lm)
    check_array(offsets, f"{t} {NUM_VERTICES} 2", name="offsets")
    check_array(rotation, f"{t} 3 3", name="rotation")
    d3 = np.concatenate([offsets, np.zeros((t, NUM_VERTICES, 1), np.float32)], axis=2).astype(np.float64)
    lm[:, :NUM_VERTICES] += pose_displacement(d3, rotation, np.asarray(scale, np.float64)).astype(np.float32)
    return lm


def with_brow_motion(landmarks: np.ndarray, valid: np.ndarray, rotation: np.ndarray, scale: np.ndarray,
                     payloads: Callable[[int], AppearanceFrame], appearance: ExpressionAppearance | None,
                     label: LabelBrows | None = None) -> np.ndarray:
    """An edit's destination landmarks with the brow motion of whatever lends its frames
    detail (:func:`frame_brow_offsets`); the input itself when nothing does.

    Args:
        landmarks: ``(T, N >= 468, 3)`` destination landmarks, frame pixels.
        valid: ``(T,) bool`` frames with a face; rotation ``(V, 3, 3)`` and scale ``(V,)``
            their poses (``V = valid.sum()``).
        payloads, appearance: the edit's appearance payloads and step (None: no step).
        label: the calibrated brow shapes of label mode, or None.
    """
    if appearance is None:
        return landmarks
    offsets = frame_brow_offsets(payloads, len(landmarks), appearance, label)
    if offsets is None:
        return landmarks
    out = np.array(landmarks, np.float32, copy=True)
    out[valid] = add_brow_motion(out[valid], offsets[valid], rotation, scale)
    return out
