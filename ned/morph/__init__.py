"""The face model (default backend): topology, expression rig, fitting, rasterisation.

Public API:

- :mod:`ned.morph.topology`: :class:`Topology`, :func:`load_topology` (canonical mesh,
  triangles, openings, UVs, named groups), geometry helpers.
- :mod:`ned.morph.rig`: :class:`Blendshape`, :class:`Rig`, :func:`load_rig`, the named
  subsets :data:`SPEECH_SHAPES`, :data:`BLINK_SHAPES`, :data:`GAZE_SHAPES`,
  :data:`KEPT_SHAPES`, :data:`EMOTION_SHAPES`.
- :mod:`ned.morph.fit`: :class:`FitOptions`, :class:`Pose`, :class:`FaceFit`,
  :class:`FaceFits`, :class:`FaceModel`, :func:`estimate_identity`,
  :func:`apply_expression_delta`.
- :mod:`ned.morph.raster`: :func:`render_nmfc`, :func:`render_shape`.
"""

from ned.morph.fit import (
    FaceFit,
    FaceFits,
    FaceModel,
    FitOptions,
    Pose,
    apply_expression_delta,
    estimate_identity,
)
from ned.morph.raster import render_nmfc, render_shape
from ned.morph.rig import (
    BLINK_SHAPES,
    EMOTION_SHAPES,
    GAZE_SHAPES,
    KEPT_SHAPES,
    SPEECH_SHAPES,
    Blendshape,
    Rig,
    load_rig,
)
from ned.morph.topology import Topology, load_topology

__all__ = [
    "Blendshape",
    "Rig",
    "load_rig",
    "SPEECH_SHAPES",
    "BLINK_SHAPES",
    "GAZE_SHAPES",
    "KEPT_SHAPES",
    "EMOTION_SHAPES",
    "Topology",
    "load_topology",
    "FitOptions",
    "Pose",
    "FaceFit",
    "FaceFits",
    "FaceModel",
    "estimate_identity",
    "apply_expression_delta",
    "render_nmfc",
    "render_shape",
]
