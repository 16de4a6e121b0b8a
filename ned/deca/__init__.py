"""Optional DECA / FLAME backend: NED's 3-D reconstruction for users who have the files.

Public API:

- :class:`DecaBackend` (``DecaBackend(deca_dir, DecaOptions())``): ``crop``, ``encode``,
  ``encode_frame``, ``vertices``, ``vertices_crop``, ``vertices_frame``, ``render_nmfc``,
  ``render_shape``, ``faces``, ``nmfc_colors``; the mesh rendering itself is in
  :mod:`ned.deca.render` (imported on first use: it needs :mod:`ned.morph`);
- :class:`DecaParams` and NED's ``DECA/<frame>.pkl`` files: :func:`save_deca_params`,
  :func:`load_deca_params`, :func:`list_deca_files`, :func:`deca_file_name`;
- the learned manipulator's 51 numbers: :func:`to_manipulator_input`,
  :func:`from_manipulator_output`, :func:`read_manipulator_input`, :func:`save_manipulated`;
- FLAME without chumpy: :func:`load_flame`, :class:`FlameLayer`; the restricted unpickler
  :func:`load_pickle`.
"""

from ned.deca.backend import ALBEDO_FILE, DECA_FILE, FLAME_FILE, DecaBackend, DecaFiles, DecaOptions, find_deca_files
from ned.deca.encoder import COARSE_OUTPUTS, CROP_SIZE, DETAIL_OUTPUTS, DecaEncoder, build_deca_encoder
from ned.deca.flame import FlameArrays, FlameLayer, axis_angle_to_matrix, flame_arrays_from_dict, load_flame
from ned.deca.geometry import crop_from_points, frame_from_crop_points, project_to_crop, warp_to_crop
from ned.deca.params import (
    DECA_KEYS,
    MANIPULATOR_INPUTS,
    DecaParams,
    deca_file_name,
    from_manipulator_output,
    list_deca_files,
    load_deca_params,
    read_manipulator_input,
    save_deca_params,
    save_manipulated,
    to_manipulator_input,
)
from ned.deca.safe_pickle import load_pickle, loads_pickle

__all__ = [
    "ALBEDO_FILE",
    "COARSE_OUTPUTS",
    "CROP_SIZE",
    "DECA_FILE",
    "DECA_KEYS",
    "DETAIL_OUTPUTS",
    "DecaBackend",
    "DecaEncoder",
    "DecaFiles",
    "DecaOptions",
    "DecaParams",
    "FLAME_FILE",
    "FlameArrays",
    "FlameLayer",
    "MANIPULATOR_INPUTS",
    "axis_angle_to_matrix",
    "build_deca_encoder",
    "crop_from_points",
    "deca_file_name",
    "find_deca_files",
    "flame_arrays_from_dict",
    "frame_from_crop_points",
    "from_manipulator_output",
    "list_deca_files",
    "load_deca_params",
    "load_flame",
    "load_pickle",
    "loads_pickle",
    "project_to_crop",
    "read_manipulator_input",
    "save_deca_params",
    "save_manipulated",
    "to_manipulator_input",
    "warp_to_crop",
]
