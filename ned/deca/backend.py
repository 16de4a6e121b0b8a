"""The DECA / FLAME backend: files in ``--deca_dir`` -> per-frame :class:`DecaParams` and meshes.

Users who have DECA's files select it with ``--backend deca --deca_dir <dir>``; ``<dir>`` (or
its ``data/`` sub-folder, DECA's own layout) holds:

- ``generic_model.pkl``: FLAME 2020 (required);
- ``deca_model.tar``: DECA's trained encoders (required);
- ``FLAME_albedo_from_BFM.npz``: DECA's texture space (optional; not needed for NMFC /
  shape rendering, only noted when present).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ned.distributed import check_device_spec, resolve_device
from ned.errors import ModelFileError
from ned.deca.encoder import (
    CROP_SIZE,
    DETAIL_OUTPUTS,
    build_deca_encoder,
    load_deca_checkpoint,
    load_encoder_weights,
    split_coarse_code,
)
from ned.deca.flame import FlameLayer, load_flame
from ned.deca.geometry import crop_from_points, frame_from_crop_points, project_to_crop, warp_to_crop
from ned.deca.params import DecaParams
from ned.types import check_array

__all__ = ["ALBEDO_FILE", "DECA_FILE", "FLAME_FILE", "DecaBackend", "DecaFiles", "DecaOptions", "find_deca_files"]

logger = logging.getLogger(__name__)

FLAME_FILE = "generic_model.pkl"
DECA_FILE = "deca_model.tar"
ALBEDO_FILE = "FLAME_albedo_from_BFM.npz"

_ORIGIN = {
    FLAME_FILE: (
        "FLAME 2020's model file, from https://flame.is.tue.mpg.de (free registration; use it only "
        "under the FLAME licence shown there, for non-commercial scientific research)"
    ),
    DECA_FILE: (
        "DECA's trained model, linked from the README of https://github.com/YadiraF/DECA "
        "(registration at https://deca.is.tue.mpg.de; DECA licence: non-commercial scientific research only)"
    ),
    ALBEDO_FILE: (
        "DECA's optional texture space, converted from the Basel Face Model with "
        "https://github.com/TimoBolkart/BFM_to_FLAME (BFM licence terms apply)"
    ),
}


@dataclass(frozen=True)
class DecaFiles:
    """Where the backend's files are.

    Attributes:
        flame: ``generic_model.pkl``.
        deca: ``deca_model.tar``.
        albedo: ``FLAME_albedo_from_BFM.npz``, or None when absent.
    """

    flame: Path
    deca: Path
    albedo: Path | None


def _missing(deca_dir: Path, name: str, searched: list[Path]) -> ModelFileError:
    places = " and ".join(str(p) for p in searched)
    return ModelFileError(
        f"{name} not found (looked in {places}): it is {_ORIGIN[name]}; put it there, "
        "or pass the folder that holds it with --deca_dir"
    )


def find_deca_files(deca_dir: str | os.PathLike) -> DecaFiles:
    """Locate the backend's files in ``deca_dir`` or ``deca_dir/data``.

    Raises:
        ModelFileError: the folder or a required file is missing; the message names the file,
            where it comes from, its licence terms and ``--deca_dir``.
    """
    root = Path(deca_dir)
    if not root.is_dir():
        raise ModelFileError(
            f"--deca_dir {root}: no such folder; it must hold {FLAME_FILE} ({_ORIGIN[FLAME_FILE]}) "
            f"and {DECA_FILE} ({_ORIGIN[DECA_FILE]})"
        )
    searched = [root, root / "data"]

    def locate(name: str) -> Path | None:
        return next((folder / name for folder in searched if (folder / name).is_file()), None)

    flame, deca, albedo = locate(FLAME_FILE), locate(DECA_FILE), locate(ALBEDO_FILE)
    if flame is None:
        raise _missing(root, FLAME_FILE, searched)
    if deca is None:
        raise _missing(root, DECA_FILE, searched)
    return DecaFiles(flame=flame, deca=deca, albedo=albedo)


@dataclass(frozen=True)
class DecaOptions:
    """Options of the DECA backend.

    Attributes:
        device: device for the encoders and FLAME: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        use_detail: run DECA's detail encoder for ``detail`` (1, 128); zeros when False or
            when the checkpoint has no ``E_detail``.
        crop_scale: enlargement of the landmark box for DECA's crop (> 0; DECA: 1.25).
        encoder_width: ResNet stem width; DECA's checkpoint needs 64 (smaller only in tests).
    """

    device: str = "cpu"
    use_detail: bool = True
    crop_scale: float = 1.25
    encoder_width: int = 64

    def __post_init__(self) -> None:
        check_device_spec(self.device)
        if not self.crop_scale > 0:
            raise ValueError(f"crop_scale: expected > 0, got {self.crop_scale}")
        if self.encoder_width < 1:
            raise ValueError(f"encoder_width: expected >= 1, got {self.encoder_width}")


class DecaBackend:
    """DECA's coarse (and detail) encoders and FLAME, loaded from ``deca_dir``.

    Args:
        deca_dir: folder with ``generic_model.pkl`` and ``deca_model.tar`` (or their ``data/``).
        options: :class:`DecaOptions`.

    Raises:
        ModelFileError: a file is missing, unreadable, unsafe, or does not match DECA's layout.
    """

    def __init__(self, deca_dir: str | os.PathLike, options: DecaOptions = DecaOptions()) -> None:
        self.options = options
        self.files = find_deca_files(deca_dir)
        self.device = resolve_device(options.device)
        flame_arrays = load_flame(self.files.flame)
        self.flame = FlameLayer(flame_arrays).to(self.device).eval()
        self.faces = flame_arrays.faces.astype(np.int32)  # (F, 3) triangles for rasterisation
        template = flame_arrays.v_template
        extent = np.maximum(template.max(axis=0) - template.min(axis=0), 1e-12)
        # (V, 3) NMFC colours: template coordinates normalised to [0, 1] per axis (as DECA's NED fork)
        self.nmfc_colors = ((template - template.min(axis=0)) / extent).astype(np.float32)
        checkpoint = load_deca_checkpoint(self.files.deca)
        source = str(self.files.deca)
        self.coarse = build_deca_encoder("coarse", width=options.encoder_width)
        load_encoder_weights(self.coarse, checkpoint["E_flame"], entry="E_flame", source=source)
        self.coarse.to(self.device).eval()
        self.detail = None
        if options.use_detail and "E_detail" in checkpoint:
            self.detail = build_deca_encoder("detail", width=options.encoder_width)
            load_encoder_weights(self.detail, checkpoint["E_detail"], entry="E_detail", source=source)
            self.detail.to(self.device).eval()
        elif options.use_detail:
            logger.info("%s has no E_detail; the detail code is written as zeros", source)
        if self.files.albedo is None:
            logger.info("%s not found: texture is not needed for NMFC / shape rendering", ALBEDO_FILE)
        logger.info("DECA backend: FLAME %s (%d vertices), encoders %s on %s",
                    self.files.flame, self.num_vertices, source, self.device)

    @property
    def num_vertices(self) -> int:
        return int(self.nmfc_colors.shape[0])

    def crop(self, frame: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DECA's input crop of a frame around face landmarks.

        Args:
            frame: (H, W, 3) uint8 RGB.
            points: (N, 2) face landmarks in frame pixels (extra columns are ignored).

        Returns:
            ``crop`` (224, 224, 3) uint8 RGB and ``crop_from_frame`` (3, 3) float64.

        Raises:
            ValueError: wrong shapes, non-finite points.
        """
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] < 2:
            raise ValueError(f"points: expected shape (N, 2), got {points.shape}")
        crop_from_frame = crop_from_points(points[:, :2], scale=self.options.crop_scale, crop_size=CROP_SIZE)
        return warp_to_crop(frame, crop_from_frame, crop_size=CROP_SIZE), crop_from_frame

    @torch.inference_mode()
    def encode(
        self,
        crop: np.ndarray,
        *,
        crop_from_frame: np.ndarray | None = None,
        original_size: tuple[int, int] | None = None,
    ) -> DecaParams:
        """Run DECA on one 224x224 crop.

        Args:
            crop: (224, 224, 3) uint8 RGB face crop.
            crop_from_frame: (3, 3) frame -> crop similarity (identity when the crop is the frame).
            original_size: (width, height) of the frame (224, 224 by default).

        Returns:
            The frame's :class:`DecaParams`.

        Raises:
            ValueError: a crop of the wrong shape or dtype.
        """
        check_array(crop, f"{CROP_SIZE} {CROP_SIZE} 3", np.uint8, name="crop")
        images = torch.from_numpy(np.ascontiguousarray(crop)).to(self.device)
        images = images.permute(2, 0, 1)[None].float() / 255.0  # (1, 3, 224, 224) in [0, 1]
        code = split_coarse_code(self.coarse(images).float())
        detail = self.detail(images).float() if self.detail is not None else torch.zeros(1, DETAIL_OUTPUTS)
        arrays = {name: value.cpu().numpy() for name, value in code.items()}
        return DecaParams(
            **arrays,
            detail=detail.cpu().numpy(),
            crop_from_frame=np.eye(3) if crop_from_frame is None else crop_from_frame,
            original_size=(CROP_SIZE, CROP_SIZE) if original_size is None else original_size,
        )

    def encode_frame(self, frame: np.ndarray, points: np.ndarray) -> DecaParams:
        """Crop a frame around its face landmarks and run DECA on the crop.

        ``crop_from_frame`` and ``original_size`` of the result refer to ``frame``. In NED's
        layout DECA reconstructs the ``images/`` face crops (not the full video frames), so
        pass those crops to keep NED's ``tform`` / ``original_size`` and NMFC coordinates.

        Args:
            frame: (H, W, 3) uint8 RGB.
            points: (N, 2+) face landmarks in frame pixels.

        Raises:
            ValueError: wrong shapes, non-finite points.
        """
        crop, crop_from_frame = self.crop(frame, points)
        return self.encode(crop, crop_from_frame=crop_from_frame, original_size=(frame.shape[1], frame.shape[0]))

    @torch.inference_mode()
    def vertices(self, params: DecaParams) -> np.ndarray:
        """(V, 3) float32 FLAME vertices in model space (metres)."""
        tensors = [torch.from_numpy(a).to(self.device) for a in (params.shape, params.exp, params.pose)]
        return self.flame(*tensors)[0].cpu().numpy()

    def vertices_crop(self, params: DecaParams) -> np.ndarray:
        """(V, 3) float32 vertices in 224x224 crop pixels (x, y, z; z larger = farther)."""
        return project_to_crop(self.vertices(params), params.cam[0], crop_size=CROP_SIZE)

    def vertices_frame(self, params: DecaParams) -> np.ndarray:
        """(V, 3) float32 vertices in frame pixels (through ``crop_from_frame``'s inverse)."""
        return frame_from_crop_points(self.vertices_crop(params), params.crop_from_frame)

    def render_nmfc(self, params: DecaParams, size: tuple[int, int] | None = None) -> np.ndarray:
        """NMFC image of the frame's FLAME mesh in frame pixels.

        Args:
            params: the frame's parameters.
            size: (H, W) of the output; the frame's size (``original_size``) by default.

        Returns:
            (H, W, 3) uint8 RGB, background 0.
        """
        from ned.deca.render import render_flame_nmfc

        size = (params.original_size[1], params.original_size[0]) if size is None else size
        return render_flame_nmfc(self.vertices_frame(params), self.faces, self.nmfc_colors, size)

    def render_shape(self, params: DecaParams, size: tuple[int, int] | None = None) -> np.ndarray:
        """Grey shaded image of the frame's FLAME mesh in frame pixels; as :meth:`render_nmfc`."""
        from ned.deca.render import render_flame_shape

        size = (params.original_size[1], params.original_size[0]) if size is None else size
        return render_flame_shape(self.vertices_frame(params), self.faces, size)
