"""Options of the appearance step (one frozen dataclass, validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AppearanceOptions", "APPEARANCE_MODES"]

#: ``auto``: reference detail when the frame carries a reference, else the exemplar bank
#: when one is loaded and the frame names an emotion, else the built-in maps;
#: ``maps``: built-in maps only; ``reference``: reference / exemplar detail only;
#: ``off``: no change.
APPEARANCE_MODES = ("auto", "maps", "reference", "off")


@dataclass(frozen=True)
class AppearanceOptions:
    """How expression appearance is added to a warped face.

    Attributes:
        mode: one of :data:`APPEARANCE_MODES`.
        texture_size: texels per side of texture space, 64..512 (192: about 1.2 texels
            per pixel of a 256 px aligned crop).
        map_strength: scale of the built-in crease/shading maps, [0, 4] (1 = as authored;
            1.1 chosen on the MEAD clips: 1.5 read slightly more strongly to FER2013 but moved
            dlib's identity embedding past 0.35 on one actor's angry edit, 1.1 keeps it at 0.35).
        release_scale: scale of the maps for weights that *decrease* (the source's own
            expression fading), [0, 1]; creases are taken out more gently than put in.
        detail_strength: scale of reference / exemplar detail (ratio images), [0, 4] (1.5 tuned
            like map_strength).
        detail_low_sigma_iod: low-pass of the ratio (removes pores, noise, moles), Gaussian
            sigma in inter-ocular distances, [0, 0.2] (0.025 = 1.6 px at a 65 px IOD).
        detail_high_sigma_iod: the very-low-frequency part removed from the ratio (lighting,
            pose shading), Gaussian sigma in IOD, (detail_low_sigma_iod, 2].
        detail_clamp: largest |log ratio| kept, (0, 2] (0.35: x0.70 .. x1.42).
        max_log_gain: largest |log luminance gain| applied per pixel in total, (0, 2].
        temporal_alpha: weight of the newest frame in the exponential smoothing of the
            detail map over time, (0, 1] (1 = no smoothing).
        skin_guard: ``(low, high)`` local luminance relative to the face's median skin
            luminance below which (``low``) the change fades to zero, fully kept from
            ``high`` up: protects hair, stubble, nostrils and frames of glasses, 0 <= low <
            high <= 1.5.
        guard_sigma_iod: blur of the luminance used by ``skin_guard``, IOD, [0, 0.2].
        exemplars: how many exemplars of a bank are blended per frame, 1..16.
    """

    mode: str = "auto"
    texture_size: int = 192
    map_strength: float = 1.1
    release_scale: float = 0.5
    detail_strength: float = 1.5
    detail_low_sigma_iod: float = 0.025
    detail_high_sigma_iod: float = 0.35
    detail_clamp: float = 0.35
    max_log_gain: float = 0.5
    temporal_alpha: float = 0.5
    skin_guard: tuple[float, float] = (0.45, 0.7)
    guard_sigma_iod: float = 0.03
    exemplars: int = 3

    def __post_init__(self) -> None:
        if self.mode not in APPEARANCE_MODES:
            raise ValueError(f"AppearanceOptions.mode must be one of {APPEARANCE_MODES}, got {self.mode!r}")
        if isinstance(self.texture_size, bool) or not isinstance(self.texture_size, int) \
                or not 64 <= self.texture_size <= 512:
            raise ValueError(f"AppearanceOptions.texture_size must be an integer in [64, 512], got {self.texture_size!r}")
        _in_range("map_strength", self.map_strength, 0.0, 4.0)
        _in_range("release_scale", self.release_scale, 0.0, 1.0)
        _in_range("detail_strength", self.detail_strength, 0.0, 4.0)
        _in_range("detail_low_sigma_iod", self.detail_low_sigma_iod, 0.0, 0.2)
        if not self.detail_low_sigma_iod < self.detail_high_sigma_iod <= 2.0:
            raise ValueError("AppearanceOptions.detail_high_sigma_iod must be in (detail_low_sigma_iod, 2], "
                             f"got {self.detail_high_sigma_iod}")
        _in_range("detail_clamp", self.detail_clamp, 0.0, 2.0, open_low=True)
        _in_range("max_log_gain", self.max_log_gain, 0.0, 2.0, open_low=True)
        _in_range("temporal_alpha", self.temporal_alpha, 0.0, 1.0, open_low=True)
        guard = tuple(self.skin_guard)
        if len(guard) != 2 or not 0.0 <= guard[0] < guard[1] <= 1.5:
            raise ValueError(f"AppearanceOptions.skin_guard must be (low, high) with 0 <= low < high <= 1.5, "
                             f"got {self.skin_guard!r}")
        _in_range("guard_sigma_iod", self.guard_sigma_iod, 0.0, 0.2)
        if isinstance(self.exemplars, bool) or not isinstance(self.exemplars, int) or not 1 <= self.exemplars <= 16:
            raise ValueError(f"AppearanceOptions.exemplars must be an integer in [1, 16], got {self.exemplars!r}")


def _in_range(name: str, value: float, low: float, high: float, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (low < value if open_low else low <= value) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"AppearanceOptions.{name} must be in {bracket}{low}, {high}], got {value!r}")
