"""Expression appearance: the creases, folds and shading that make an edited emotion read.

Shape is not enough (DESIGN.md, Rendering): this package adds, after the warp, a
luminance-only change in the skin of the warped face, rendered through the mesh's
texture space (:mod:`ned.appearance.texture`) from

- the built-in, authored crease/shading maps blended by the change of the emotion
  weights (label mode; :mod:`ned.appearance.maps`, built by
  ``scripts/build_appearance_maps.py``);
- ratio images of a reference actor's emotion frame over their neutral frames (reference
  mode; :mod:`ned.appearance.ratio`), band-limited so that moles, lighting and colour of
  the reference stay behind;
- the closest exemplars of a bank built from the user's own labelled footage
  (:mod:`ned.appearance.exemplars`, ``ned exemplars build``);

and, with a reference or a bank, the brow shape their frames show against the mesh, added
to the edited mesh before the warp (:mod:`ned.appearance.brows`).

Plug it into the warp renderer (see :mod:`ned.appearance.hook`)::

    from ned.appearance import AppearanceFrame, AppearanceOptions, ExpressionAppearance
    renderer = make_renderer(render_options, appearance=ExpressionAppearance(AppearanceOptions()))
    payload = AppearanceFrame(source_expression=src[t], target_expression=new[t], frame_index=t)
"""

from ned.appearance.compose import apply_luminance_gain, render_gain
from ned.appearance.exemplars import BankOptions, ExemplarBank, build_bank, discover_clips, load_bank
from ned.appearance.hook import AppearanceFrame, ExpressionAppearance, ReferenceFrame, detail_weight, emotion_delta
from ned.appearance.maps import AppearanceMaps, load_maps
from ned.appearance.options import APPEARANCE_MODES, AppearanceOptions
from ned.appearance.ratio import RatioTransfer, band_pass, detail_map, luminance_uv
from ned.appearance.texture import UVRaster, image_to_uv, skin_mask_uv, uv_raster, uv_to_image

__all__ = [
    "APPEARANCE_MODES",
    "AppearanceOptions",
    "AppearanceFrame",
    "ReferenceFrame",
    "ExpressionAppearance",
    "AppearanceMaps",
    "load_maps",
    "RatioTransfer",
    "detail_map",
    "band_pass",
    "luminance_uv",
    "detail_weight",
    "emotion_delta",
    "apply_luminance_gain",
    "render_gain",
    "ExemplarBank",
    "BankOptions",
    "build_bank",
    "load_bank",
    "discover_clips",
    "UVRaster",
    "uv_raster",
    "image_to_uv",
    "uv_to_image",
    "skin_mask_uv",
]
