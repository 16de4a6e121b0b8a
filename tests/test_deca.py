"""Tests of the DECA / FLAME backend (ned.deca) on small files the tests build themselves."""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.transform import Rotation

from ned.deca import (
    COARSE_OUTPUTS,
    CROP_SIZE,
    DETAIL_OUTPUTS,
    MANIPULATOR_INPUTS,
    DecaBackend,
    DecaOptions,
    DecaParams,
    FlameLayer,
    axis_angle_to_matrix,
    build_deca_encoder,
    crop_from_points,
    deca_file_name,
    find_deca_files,
    flame_arrays_from_dict,
    frame_from_crop_points,
    from_manipulator_output,
    list_deca_files,
    load_deca_params,
    load_flame,
    load_pickle,
    loads_pickle,
    project_to_crop,
    read_manipulator_input,
    save_deca_params,
    save_manipulated,
    to_manipulator_input,
    warp_to_crop,
)
from ned.deca.encoder import load_encoder_weights, split_coarse_code
from ned.deca.safe_pickle import TransformRecord, dump_ned_pickle
from ned.errors import InputError, ModelFileError

torch.set_num_threads(1)

ATOL = 1e-5  # float32 skinning vs float64 hand computation
TINY_WIDTH = 8  # ResNet stem width of the test checkpoints (DECA's is 64)

# --------------------------------------------------------------------------------------
# A small FLAME-format model: 12 vertices, FLAME's 5 joints, 400 blend shapes, 36 pose dirs.
# Joints are regressed one-hot from vertices 0 (root), 1 (neck), 4 (jaw), 8, 9 (eyes).
N_VERTS = 12
JOINT_VERTEX = (0, 1, 4, 8, 9)
ROOT_ONLY = [0, 1, 2, 3]
JAW_ONLY = [4, 5, 6, 7]
HALF_ROOT_HALF_JAW = 11


def _weights() -> np.ndarray:
    w = np.zeros((N_VERTS, 5))
    w[ROOT_ONLY, 0] = 1.0
    w[JAW_ONLY, 2] = 1.0
    w[8, 3] = 1.0
    w[9, 4] = 1.0
    w[10, 1] = 1.0
    w[HALF_ROOT_HALF_JAW, [0, 2]] = 0.5
    return w


def small_flame_dict(seed: int = 0) -> dict:
    """Arrays with generic_model.pkl's keys and layouts (random values)."""
    rng = np.random.default_rng(seed)
    regressor = np.zeros((5, N_VERTS))
    regressor[np.arange(5), JOINT_VERTEX] = 1.0
    return {
        "v_template": rng.normal(size=(N_VERTS, 3)) * 0.1,
        "shapedirs": rng.normal(size=(N_VERTS, 3, 400)) * 0.01,
        "posedirs": rng.normal(size=(N_VERTS, 3, 36)) * 0.01,
        "J_regressor": sp.csc_matrix(regressor),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": _weights(),
        "f": np.array([[0, 1, 2], [4, 5, 6], [8, 9, 10], [3, 7, 11]], dtype=np.uint32),
        "J": regressor @ np.zeros((N_VERTS, 3)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


class _Py2StylePickler(pickle._Pickler):
    """Writes bytes and str as Python 2 ``str`` opcodes (BINSTRING), as FLAME's file has."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        size = len(data)
        head = pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size)
        self.write(head + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


@pytest.fixture()
def fake_chumpy(monkeypatch):
    """A stand-in ``chumpy.ch.Ch`` (importable only during the test) to write FLAME pickles."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = {"x"}
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    package = types.ModuleType("chumpy")
    module = types.ModuleType("chumpy.ch")
    module.Ch = Ch
    package.ch = module
    monkeypatch.setitem(sys.modules, "chumpy", package)
    monkeypatch.setitem(sys.modules, "chumpy.ch", module)
    return Ch


def flame_pickle_bytes(model: dict, Ch, style: str) -> bytes:
    """FLAME's pickle as FLAME ships it (py2 style) or as Python 3 would write it."""
    model = dict(model)
    for key in ("shapedirs", "v_template", "weights"):
        model[key] = Ch(model[key])
    if style == "py2":
        buffer = io.BytesIO()
        _Py2StylePickler(buffer, protocol=2).dump(model)
        # numpy 1 / old scipy module names, as in the released file (GLOBAL is plain text)
        return (buffer.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")
                .replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n"))
    return pickle.dumps(model, protocol={"protocol0": 0, "protocol2": 2, "protocol4": 4}[style])


def write_flame(path: Path, Ch, style: str = "py2", seed: int = 0) -> dict:
    model = small_flame_dict(seed)
    path.write_bytes(flame_pickle_bytes(model, Ch, style))
    return model


def tiny_checkpoint(path: Path, *, seed: int = 0, detail: bool = True, width: int = TINY_WIDTH) -> dict:
    """A deca_model.tar with DECA's layout (random weights, small ResNet width)."""
    torch.manual_seed(seed)
    coarse = build_deca_encoder("coarse", width=width)
    checkpoint = {"E_flame": coarse.state_dict()}
    if detail:
        checkpoint["E_detail"] = build_deca_encoder("detail", width=width).state_dict()
        checkpoint["D_detail"] = {"layers.0.weight": torch.zeros(2, 2)}
    torch.save(checkpoint, path)
    return checkpoint


@pytest.fixture()
def deca_dir(tmp_path, fake_chumpy) -> Path:
    folder = tmp_path / "deca"
    folder.mkdir()
    write_flame(folder / "generic_model.pkl", fake_chumpy)
    tiny_checkpoint(folder / "deca_model.tar")
    return folder


@pytest.fixture()
def backend(deca_dir) -> DecaBackend:
    return DecaBackend(deca_dir, DecaOptions(encoder_width=TINY_WIDTH))


def random_params(seed: int = 0, **changes) -> DecaParams:
    rng = np.random.default_rng(seed)
    values = dict(
        shape=rng.normal(size=(1, 100)), tex=rng.normal(size=(1, 50)), exp=rng.normal(size=(1, 50)),
        pose=rng.normal(size=(1, 6)) * 0.1, cam=np.array([[8.0, 0.01, -0.02]]),
        light=rng.normal(size=(1, 9, 3)), detail=rng.normal(size=(1, 128)),
        crop_from_frame=np.array([[0.5, 0.0, -10.0], [0.0, 0.5, -20.0], [0.0, 0.0, 1.0]]),
        original_size=(640, 480),
    )
    values.update(changes)
    return DecaParams(**values)


# --------------------------------------------------------------------------------------
# Restricted unpickler


class TestSafePickle:
    @pytest.mark.parametrize("style", ["py2", "protocol0", "protocol2", "protocol4"])
    def test_reads_flame_without_chumpy(self, tmp_path, fake_chumpy, style):
        model = write_flame(tmp_path / "generic_model.pkl", fake_chumpy, style)
        sys.modules.pop("chumpy.ch")  # the loader must not need chumpy
        sys.modules.pop("chumpy")
        loaded = load_pickle(tmp_path / "generic_model.pkl")
        assert type(loaded["shapedirs"]) is np.ndarray
        np.testing.assert_array_equal(loaded["shapedirs"], model["shapedirs"])
        np.testing.assert_array_equal(loaded["v_template"], model["v_template"])
        assert sp.issparse(loaded["J_regressor"]) and loaded["J_regressor"].format == "csc"
        np.testing.assert_array_equal(loaded["J_regressor"].toarray(), model["J_regressor"].toarray())
        np.testing.assert_array_equal(loaded["f"], model["f"])
        assert loaded["bs_style"] == "lbs"

    def test_py2_file_uses_python2_names(self, fake_chumpy):
        data = flame_pickle_bytes(small_flame_dict(), fake_chumpy, "py2")
        assert b"cchumpy.ch\nCh\n" in data and b"cnumpy.core.multiarray\n" in data
        assert b"cscipy.sparse.csc\n" in data and b"c__builtin__\nset\n" in data

    @pytest.mark.parametrize(
        "target",
        [(os.system, "touch {marker}"), (eval, "open({marker!r}, 'w')"), (exec, "open({marker!r}, 'w')")],
        ids=["os.system", "eval", "exec"],
    )
    def test_malicious_reduce_is_refused_and_not_run(self, tmp_path, target):
        marker = tmp_path / "pwned"
        func, template = target

        class Evil:
            def __reduce__(self):
                return func, (template.format(marker=str(marker)),)

        data = pickle.dumps({"v_template": np.zeros((2, 3)), "payload": Evil()}, protocol=2)
        path = tmp_path / "generic_model.pkl"
        path.write_bytes(data)
        with pytest.raises(ModelFileError, match=r"refusing to load .*generic_model\.pkl: it references \S+"):
            load_pickle(path)
        assert not marker.exists()

    def test_message_names_the_global(self):
        import subprocess

        class Evil:
            def __reduce__(self):
                return subprocess.Popen, (["true"],)

        with pytest.raises(ModelFileError, match=r"refusing to load x\.pkl: it references subprocess\.Popen"):
            loads_pickle(pickle.dumps(Evil()), source="x.pkl")

    @pytest.mark.parametrize("name", [b"builtins\ngetattr", b"__builtin__\n__import__", b"numpy\nload",
                                      b"torch._utils\n_rebuild_tensor", b"chumpy.ch_ops\nadd"])
    def test_other_globals_refused(self, name):
        with pytest.raises(ModelFileError, match="refusing to load"):
            loads_pickle(b"\x80\x02c" + name + b"\n.")

    def test_stand_in_class_cannot_be_modified(self):
        # GLOBAL chumpy.ch Ch; BUILD (None, {'resolve': None}) on the class object itself
        from ned.deca import safe_pickle

        original = safe_pickle._ChumpyArray.resolve
        data = b"\x80\x02cchumpy.ch\nCh\nN}X\x07\x00\x00\x00resolveNs\x86b."
        with pytest.raises(ModelFileError):
            loads_pickle(data)
        assert safe_pickle._ChumpyArray.resolve is original
        with pytest.raises(AttributeError, match="read-only"):
            safe_pickle._ChumpyArray.resolve = None

    def test_reconstructor_only_for_stand_ins(self):
        # copy_reg._reconstructor(numpy.ndarray, numpy.ndarray, None): refused
        data = b"ccopy_reg\n_reconstructor\n(cnumpy\nndarray\ncnumpy\nndarray\nNtR."
        with pytest.raises(ModelFileError, match="cannot read"):
            loads_pickle(data)

    @pytest.mark.parametrize("data", [b"", b"not a pickle", b"\x80\x04\x95"])
    def test_garbage(self, data):
        with pytest.raises(ModelFileError, match="cannot read"):
            loads_pickle(data)

    def test_missing_file(self, tmp_path):
        with pytest.raises(ModelFileError, match="no such file"):
            load_pickle(tmp_path / "nothing.pkl")

    def test_protocol5_arrays(self):
        value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
        loaded = loads_pickle(pickle.dumps(value, protocol=5))
        np.testing.assert_array_equal(loaded["a"], value["a"])

    def test_writer_uses_numpy1_and_skimage_names(self):
        data = dump_ned_pickle({"a": np.ones((1, 3), np.float32), "tform": TransformRecord(np.eye(3))})
        assert b"numpy._core" not in data
        assert b"numpy.core.multiarray" in data and b"SimilarityTransform" in data
        loaded = loads_pickle(data)
        np.testing.assert_array_equal(loaded["tform"], np.eye(3))


# --------------------------------------------------------------------------------------
# FLAME


def _flame(seed: int = 0, **overrides) -> tuple[FlameLayer, dict]:
    model = small_flame_dict(seed)
    model.update(overrides)
    layer = FlameLayer(flame_arrays_from_dict(model)).double()
    return layer, model


def _run(layer: FlameLayer, shape=None, exp=None, pose=None) -> np.ndarray:
    shape = torch.zeros(1, 100, dtype=torch.float64) if shape is None else torch.as_tensor(shape)[None]
    exp = torch.zeros(1, 50, dtype=torch.float64) if exp is None else torch.as_tensor(exp)[None]
    pose = torch.zeros(1, 6, dtype=torch.float64) if pose is None else torch.as_tensor(pose, dtype=torch.float64)[None]
    return layer(shape.double(), exp.double(), pose)[0].numpy()


def _shaped(model: dict, shape: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """Hand computation: template + first 100 shape dirs + expression dirs 300..349."""
    dirs = model["shapedirs"]
    return model["v_template"] + dirs[:, :, :100] @ shape + dirs[:, :, 300:350] @ exp


class TestFlame:
    def test_zero_pose_is_template_plus_offsets(self):
        layer, model = _flame()
        rng = np.random.default_rng(1)
        shape, exp = rng.normal(size=100), rng.normal(size=50)
        np.testing.assert_allclose(_run(layer, shape, exp), _shaped(model, shape, exp), atol=ATOL)

    def test_zero_everything_is_template(self):
        layer, model = _flame()
        np.testing.assert_allclose(_run(layer), model["v_template"], atol=ATOL)

    @pytest.mark.parametrize("angle", [0.3, -0.5])
    def test_jaw_moves_only_jaw_weighted_vertices(self, angle):
        layer, model = _flame(posedirs=np.zeros((N_VERTS, 3, 36)))
        rest = _run(layer)
        posed = _run(layer, pose=[0, 0, 0, angle, 0, 0])
        jaw = model["v_template"][JOINT_VERTEX[2]]
        c, s = np.cos(angle), np.sin(angle)
        rot_x = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        rotated = (rest - jaw) @ rot_x.T + jaw
        unmoved = [i for i in range(N_VERTS) if _weights()[i, 2] == 0]
        np.testing.assert_allclose(posed[unmoved], rest[unmoved], atol=ATOL)
        np.testing.assert_allclose(posed[JAW_ONLY], rotated[JAW_ONLY], atol=ATOL)
        np.testing.assert_allclose(posed[HALF_ROOT_HALF_JAW],
                                   0.5 * rest[HALF_ROOT_HALF_JAW] + 0.5 * rotated[HALF_ROOT_HALF_JAW], atol=ATOL)
        assert np.abs(posed[JAW_ONLY] - rest[JAW_ONLY]).max() > 1e-3

    def test_jaw_pose_correctives(self):
        layer, model = _flame()
        angle = 0.4
        posed = _run(layer, pose=[0, 0, 0, angle, 0, 0])
        c, s = np.cos(angle), np.sin(angle)
        rot_x = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        feature = np.zeros(36)
        feature[9:18] = (rot_x - np.eye(3)).ravel()  # joints neck, jaw, eye, eye -> jaw is the 2nd block
        corrective = model["posedirs"] @ feature  # (V, 3)
        np.testing.assert_allclose(posed[ROOT_ONLY], model["v_template"][ROOT_ONLY] + corrective[ROOT_ONLY], atol=ATOL)

    def test_global_rotation_rotates_about_root(self):
        layer, model = _flame(posedirs=np.zeros((N_VERTS, 3, 36)))
        rotvec = np.array([0.1, -0.7, 0.2])
        posed = _run(layer, pose=[*rotvec, 0, 0, 0])
        root = model["v_template"][JOINT_VERTEX[0]]
        expected = (model["v_template"] - root) @ Rotation.from_rotvec(rotvec).as_matrix().T + root
        np.testing.assert_allclose(posed, expected, atol=ATOL)

    def test_batch_and_shapes(self):
        layer, _ = _flame()
        layer = layer.float()
        out = layer(torch.zeros(3, 100), torch.randn(3, 50), torch.randn(3, 6) * 0.1)
        assert out.shape == (3, N_VERTS, 3) and out.dtype == torch.float32
        with pytest.raises(ValueError, match="exp"):
            layer(torch.zeros(3, 100), torch.zeros(3, 49), torch.zeros(3, 6))
        with pytest.raises(ValueError, match="pose"):
            layer(torch.zeros(3, 100), torch.zeros(3, 50), torch.zeros(3, 5))

    def test_gradcheck(self):
        layer, _ = _flame()
        exp = torch.randn(1, 50, dtype=torch.float64) * 0.1
        pose = (torch.randn(1, 6, dtype=torch.float64) * 0.2).requires_grad_()
        assert torch.autograd.gradcheck(lambda p: layer(torch.zeros(1, 100, dtype=torch.float64), exp, p), (pose,))

    def test_load_from_file(self, tmp_path, fake_chumpy):
        model = write_flame(tmp_path / "generic_model.pkl", fake_chumpy)
        arrays = load_flame(tmp_path / "generic_model.pkl")
        assert arrays.shapedirs.shape == (N_VERTS, 3, 150)
        np.testing.assert_allclose(arrays.shapedirs[:, :, 100:], model["shapedirs"][:, :, 300:350], rtol=1e-6)
        assert arrays.parents.tolist() == [-1, 0, 1, 1, 1]
        assert arrays.j_regressor.shape == (5, N_VERTS)

    @pytest.mark.parametrize("key,value,match", [
        ("shapedirs", np.zeros((N_VERTS, 3, 300)), "shapedirs"),
        ("posedirs", np.zeros((N_VERTS, 3, 35)), "posedirs"),
        ("weights", np.zeros((N_VERTS, 4)), "weights"),
        ("kintree_table", np.array([[0, 2, 0, 1, 1], [0, 1, 2, 3, 4]]), "kintree_table"),
        ("f", np.array([[0, 1, N_VERTS]]), "f "),
    ])
    def test_bad_arrays(self, key, value, match):
        model = small_flame_dict()
        model[key] = value
        with pytest.raises(ModelFileError, match=match):
            flame_arrays_from_dict(model)

    def test_missing_key(self):
        model = small_flame_dict()
        del model["J_regressor"]
        with pytest.raises(ModelFileError, match="missing J_regressor"):
            flame_arrays_from_dict(model)


class TestAxisAngle:
    def test_matches_scipy(self):
        rotvecs = np.random.default_rng(0).normal(size=(20, 3))
        ours = axis_angle_to_matrix(torch.from_numpy(rotvecs)).numpy()
        np.testing.assert_allclose(ours, Rotation.from_rotvec(rotvecs).as_matrix(), atol=1e-12)

    @pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-5])
    def test_small_angles(self, scale):
        rotvec = np.array([[1.0, -2.0, 0.5]]) * scale
        ours = axis_angle_to_matrix(torch.from_numpy(rotvec)).numpy()
        np.testing.assert_allclose(ours, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-14)

    def test_gradcheck_at_zero(self):
        rotvec = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (rotvec,))

    def test_exception(self):
        with pytest.raises(ValueError, match="rotvec"):
            axis_angle_to_matrix(torch.zeros(2, 4))


# --------------------------------------------------------------------------------------
# Encoder


def _resnet50_expected_shapes(outputs: int) -> dict[str, tuple]:
    """E_flame / E_detail tensor names and shapes of DECA's release, written out from the spec."""
    shapes: dict[str, tuple] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["encoder.conv1.weight"] = (64, 3, 7, 7)
    bn("encoder.bn1", 64)
    in_ch = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(count):
            p = f"encoder.layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (planes, in_ch, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if block == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, in_ch, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            in_ch = planes * 4
    shapes.update({"layers.0.weight": (1024, 2048), "layers.0.bias": (1024,),
                   "layers.2.weight": (outputs, 1024), "layers.2.bias": (outputs,)})
    return shapes


class TestEncoder:
    @pytest.mark.parametrize("kind,outputs", [("coarse", 236), ("detail", 128)])
    def test_release_names_and_shapes(self, kind, outputs):
        state = build_deca_encoder(kind).state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == _resnet50_expected_shapes(outputs)

    def test_release_sized_checkpoint_loads_strictly(self):
        expected = _resnet50_expected_shapes(COARSE_OUTPUTS)
        state = {k: torch.full(shape, 0.5) if shape else torch.tensor(3) for k, shape in expected.items()}
        module = build_deca_encoder("coarse")
        load_encoder_weights(module, state, entry="E_flame", source="deca_model.tar")
        assert float(module.layers[2].bias.detach()[0]) == 0.5

    def test_forward_shape(self):
        module = build_deca_encoder("coarse", width=TINY_WIDTH).eval()
        with torch.no_grad():
            code = module(torch.rand(2, 3, CROP_SIZE, CROP_SIZE))
        parts = split_coarse_code(code)
        assert {k: tuple(v.shape) for k, v in parts.items()} == {
            "shape": (2, 100), "tex": (2, 50), "exp": (2, 50), "pose": (2, 6), "cam": (2, 3), "light": (2, 9, 3)}
        with pytest.raises(ValueError, match="224"):
            module(torch.rand(1, 3, 112, 112))

    def test_wrong_shape_names_tensor(self):
        module = build_deca_encoder("coarse", width=TINY_WIDTH)
        state = module.state_dict()
        state["encoder.layer2.1.conv2.weight"] = torch.zeros(1)
        with pytest.raises(ModelFileError, match=r"'E_flame' tensor 'encoder\.layer2\.1\.conv2\.weight' has shape"):
            load_encoder_weights(module, state, entry="E_flame", source="deca_model.tar")

    def test_missing_and_unexpected(self):
        module = build_deca_encoder("detail", width=TINY_WIDTH)
        state = module.state_dict()
        del state["layers.2.bias"]
        with pytest.raises(ModelFileError, match="lacks tensor 'layers.2.bias'"):
            load_encoder_weights(module, state, entry="E_detail", source="x")
        state = dict(module.state_dict(), extra=torch.zeros(1))
        with pytest.raises(ModelFileError, match="unexpected tensor 'extra'"):
            load_encoder_weights(module, state, entry="E_detail", source="x")

    def test_dataparallel_prefix_and_old_batchnorm(self):
        module = build_deca_encoder("detail", width=TINY_WIDTH)
        state = {f"module.{k}": v + 1 for k, v in module.state_dict().items() if "num_batches" not in k}
        load_encoder_weights(module, state, entry="E_detail", source="x")
        assert torch.equal(module.layers[0].bias, state["module.layers.0.bias"])


# --------------------------------------------------------------------------------------
# Files and the backend


class TestFiles:
    def test_missing_folder(self, tmp_path):
        with pytest.raises(ModelFileError, match=r"--deca_dir .*no such folder.*generic_model\.pkl"):
            find_deca_files(tmp_path / "nope")

    def test_missing_flame(self, tmp_path):
        with pytest.raises(ModelFileError) as info:
            find_deca_files(tmp_path)
        message = str(info.value)
        for part in ("generic_model.pkl", "flame.is.tue.mpg.de", "licence", "--deca_dir", "registration"):
            assert part in message

    def test_missing_deca_model(self, tmp_path, fake_chumpy):
        write_flame(tmp_path / "generic_model.pkl", fake_chumpy)
        with pytest.raises(ModelFileError) as info:
            DecaBackend(tmp_path)
        message = str(info.value)
        for part in ("deca_model.tar", "github.com/YadiraF/DECA", "licence", "--deca_dir"):
            assert part in message

    def test_data_subfolder_and_optional_albedo(self, tmp_path, fake_chumpy):
        (tmp_path / "data").mkdir()
        write_flame(tmp_path / "data" / "generic_model.pkl", fake_chumpy)
        (tmp_path / "deca_model.tar").write_bytes(b"x")
        files = find_deca_files(tmp_path)
        assert files.flame.parent.name == "data" and files.albedo is None
        (tmp_path / "FLAME_albedo_from_BFM.npz").write_bytes(b"x")
        assert find_deca_files(tmp_path).albedo is not None

    def test_not_a_checkpoint(self, tmp_path, fake_chumpy):
        write_flame(tmp_path / "generic_model.pkl", fake_chumpy)
        (tmp_path / "deca_model.tar").write_bytes(b"garbage")
        with pytest.raises(ModelFileError, match="deca_model.tar: not a loadable DECA checkpoint"):
            DecaBackend(tmp_path, DecaOptions(encoder_width=TINY_WIDTH))

    def test_checkpoint_with_code_is_refused(self, tmp_path, fake_chumpy):
        marker = tmp_path / "pwned"

        class Evil:
            def __reduce__(self):
                return os.system, (f"touch {marker}",)

        write_flame(tmp_path / "generic_model.pkl", fake_chumpy)
        torch.save({"E_flame": Evil()}, tmp_path / "deca_model.tar")
        with pytest.raises(ModelFileError, match="not a loadable DECA checkpoint"):
            DecaBackend(tmp_path, DecaOptions(encoder_width=TINY_WIDTH))
        assert not marker.exists()

    def test_checkpoint_without_e_flame(self, tmp_path, fake_chumpy):
        write_flame(tmp_path / "generic_model.pkl", fake_chumpy)
        torch.save({"model": {}}, tmp_path / "deca_model.tar")
        with pytest.raises(ModelFileError, match="no 'E_flame' entry"):
            DecaBackend(tmp_path, DecaOptions(encoder_width=TINY_WIDTH))

    def test_wrong_architecture(self, tmp_path, fake_chumpy):
        write_flame(tmp_path / "generic_model.pkl", fake_chumpy)
        tiny_checkpoint(tmp_path / "deca_model.tar", width=4)
        with pytest.raises(ModelFileError, match="'E_flame' tensor 'encoder.conv1.weight' has shape"):
            DecaBackend(tmp_path, DecaOptions(encoder_width=TINY_WIDTH))

    def test_unsafe_flame_file(self, tmp_path):
        class Evil:
            def __reduce__(self):
                return os.system, ("true",)

        (tmp_path / "generic_model.pkl").write_bytes(pickle.dumps(Evil(), protocol=2))
        tiny_checkpoint(tmp_path / "deca_model.tar")
        with pytest.raises(ModelFileError, match="refusing to load .*generic_model.pkl"):
            DecaBackend(tmp_path, DecaOptions(encoder_width=TINY_WIDTH))


class TestOptions:
    @pytest.mark.parametrize("kwargs,match", [({"crop_scale": 0}, "crop_scale"), ({"device": "gpu0"}, "device"),
                                              ({"encoder_width": 0}, "encoder_width")])
    def test_invalid(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            DecaOptions(**kwargs)

    def test_use_detail_changes_detail(self, deca_dir):
        crop = np.random.default_rng(0).integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        with_detail = DecaBackend(deca_dir, DecaOptions(encoder_width=TINY_WIDTH)).encode(crop)
        without = DecaBackend(deca_dir, DecaOptions(encoder_width=TINY_WIDTH, use_detail=False)).encode(crop)
        assert np.abs(with_detail.detail).sum() > 0 and not without.detail.any()
        np.testing.assert_array_equal(with_detail.exp, without.exp)

    def test_crop_scale_changes_crop(self, deca_dir):
        points = np.array([[100.0, 120.0], [180.0, 220.0]])
        frame = np.zeros((300, 300, 3), np.uint8)
        small = DecaBackend(deca_dir, DecaOptions(encoder_width=TINY_WIDTH, crop_scale=1.0)).crop(frame, points)[1]
        large = DecaBackend(deca_dir, DecaOptions(encoder_width=TINY_WIDTH, crop_scale=2.0)).crop(frame, points)[1]
        assert small[0, 0] > large[0, 0]


class TestBackend:
    def test_encode_matches_the_networks(self, backend, deca_dir):
        crop = np.random.default_rng(0).integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        params = backend.encode(crop, crop_from_frame=np.eye(3) * [[2], [2], [1]], original_size=(448, 448))
        checkpoint = torch.load(deca_dir / "deca_model.tar", weights_only=True)
        reference = build_deca_encoder("coarse", width=TINY_WIDTH)
        reference.load_state_dict(checkpoint["E_flame"])
        with torch.no_grad():
            code = reference.eval()(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)
        np.testing.assert_allclose(params.exp, code[:, 150:200].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(params.light.reshape(1, 27), code[:, 209:].numpy(), rtol=1e-5, atol=1e-6)
        shapes = {name: getattr(params, name).shape for name in ("shape", "tex", "exp", "pose", "cam", "light", "detail")}
        assert shapes == {"shape": (1, 100), "tex": (1, 50), "exp": (1, 50), "pose": (1, 6), "cam": (1, 3),
                          "light": (1, 9, 3), "detail": (1, DETAIL_OUTPUTS)}
        assert params.original_size == (448, 448)

    def test_encode_is_deterministic(self, backend):
        crop = np.full((CROP_SIZE, CROP_SIZE, 3), 128, np.uint8)
        first, second = backend.encode(crop), backend.encode(crop)
        np.testing.assert_array_equal(first.exp, second.exp)

    def test_encode_rejects_bad_crops(self, backend):
        with pytest.raises(ValueError, match="crop"):
            backend.encode(np.zeros((256, 256, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            backend.encode(np.zeros((CROP_SIZE, CROP_SIZE, 3), np.float32))

    def test_encode_frame_records_crop(self, backend):
        frame = np.random.default_rng(1).integers(0, 256, (360, 480, 3), dtype=np.uint8)
        points = np.array([[200.0, 100.0, 0.0], [280.0, 200.0, 5.0], [240.0, 150.0, 1.0]])
        params = backend.encode_frame(frame, points)
        assert params.original_size == (480, 360)
        corner = params.crop_from_frame @ np.array([points[:, 0].min(), points[:, 1].min(), 1.0])
        assert np.all(corner[:2] > 0) and np.all(corner[:2] < 223)

    def test_vertices_and_projection(self, backend):
        params = random_params()
        model_space = backend.vertices(params)
        assert model_space.shape == (N_VERTS, 3) and backend.faces.shape == (4, 3)
        crop = backend.vertices_crop(params)
        np.testing.assert_allclose(crop, project_to_crop(model_space, params.cam[0]), atol=1e-4)
        frame = backend.vertices_frame(params)
        back = frame[:, :2] @ params.crop_from_frame[:2, :2].T + params.crop_from_frame[:2, 2]
        np.testing.assert_allclose(back, crop[:, :2], atol=1e-3)
        np.testing.assert_allclose(frame[:, 2], crop[:, 2] * 2, rtol=1e-5)  # crop scale 0.5 -> frame z x2

    def test_nmfc_colors(self, backend):
        colors = backend.nmfc_colors
        assert colors.shape == (N_VERTS, 3) and colors.min() == 0.0 and colors.max() == 1.0


class TestGeometry:
    def test_project_hand_computed(self):
        vertices = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.5], [-0.5, 0.0, -1.0]])
        out = project_to_crop(vertices, np.array([1.0, 0.0, 0.0]))
        np.testing.assert_allclose(out, [[111.5, 111.5, 0.0], [223.5, -0.5, -56.0], [55.5, 111.5, 112.0]])

    def test_camera_translation_and_scale(self):
        out = project_to_crop(np.zeros((1, 3)), np.array([2.0, 0.25, 0.25]))
        np.testing.assert_allclose(out, [[(0.5 + 1) * 112 - 0.5, (1 - 0.5) * 112 - 0.5, 0.0]])

    def test_crop_box_hand_computed(self):
        points = np.array([[100.0, 100.0], [200.0, 200.0]])
        matrix = crop_from_points(points, scale=1.0)
        side = int(100 * 1.1)  # DECA: (w + h) / 2 * 1.1 * scale
        corner = 150 - side / 2
        np.testing.assert_allclose(matrix @ [corner, corner, 1], [0, 0, 1], atol=1e-9)
        np.testing.assert_allclose(matrix @ [corner + side, corner + side, 1], [223, 223, 1], atol=1e-9)

    def test_crop_round_trip(self):
        matrix = crop_from_points(np.array([[30.0, 40.0], [90.0, 120.0]]))
        crop_points = np.array([[0.0, 0.0, 10.0], [223.0, 100.0, -4.0]])
        frame_points = frame_from_crop_points(crop_points, matrix)
        again = frame_points[:, :2] @ matrix[:2, :2].T + matrix[:2, 2]
        np.testing.assert_allclose(again, crop_points[:, :2], atol=1e-4)

    def test_warp_identity(self):
        frame = np.random.default_rng(0).integers(0, 256, (240, 250, 3), dtype=np.uint8)
        np.testing.assert_array_equal(warp_to_crop(frame, np.eye(3)), frame[:224, :224])

    @pytest.mark.parametrize("points", [np.zeros((1, 2)), np.array([[1.0, np.nan], [2.0, 3.0]]),
                                        np.zeros((3, 3)), np.ones((2, 2))])
    def test_bad_points(self, points):
        with pytest.raises(ValueError, match="points"):
            crop_from_points(points)


class TestParamsFiles:
    def test_round_trip(self, tmp_path):
        params = random_params()
        path = tmp_path / deca_file_name(7)
        save_deca_params(path, params)
        assert path.name == "000007.pkl"
        loaded = load_deca_params(path)
        for name in ("shape", "tex", "exp", "pose", "cam", "light", "detail", "crop_from_frame"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(params, name))
        assert loaded.original_size == (640, 480)

    def test_file_is_ned_format(self, tmp_path):
        """Plain pickle (as NED's scripts read it) sees NED's keys, shapes and a SimilarityTransform."""
        params = random_params()
        save_deca_params(tmp_path / "000000.pkl", params)
        with open(tmp_path / "000000.pkl", "rb") as file:
            raw = pickle.load(file)
        assert set(raw) == {"shape", "tex", "exp", "pose", "cam", "light", "detail", "tform", "original_size"}
        assert raw["light"].shape == (1, 9, 3) and raw["exp"].dtype == np.float32
        from skimage.transform import SimilarityTransform

        assert isinstance(raw["tform"], SimilarityTransform)
        np.testing.assert_allclose(raw["tform"].params, params.crop_from_frame)
        np.testing.assert_allclose(raw["tform"].inverse(np.array([[0.0, 0.0]])), [[20.0, 40.0]])
        assert raw["original_size"] == (640, 480)

    def test_reads_files_written_by_ned(self, tmp_path):
        from skimage.transform import estimate_transform

        tform = estimate_transform("similarity", np.array([[10.0, 10], [10, 210], [210, 10]]),
                                   np.array([[0.0, 0], [0, 223], [223, 0]]))
        params = random_params()
        raw = {k: v for k, v in params.to_ned_dict().items() if k != "tform"}
        raw["tform"] = tform
        with open(tmp_path / "000000.pkl", "wb") as file:
            pickle.dump(raw, file)
        loaded = load_deca_params(tmp_path / "000000.pkl")
        np.testing.assert_allclose(loaded.crop_from_frame, tform.params)
        np.testing.assert_array_equal(loaded.exp, params.exp)

    def test_missing_keys_and_unsafe_files(self, tmp_path):
        save_manipulated(tmp_path / "m.pkl", np.zeros(MANIPULATOR_INPUTS))
        with pytest.raises(InputError, match="missing .*tform"):
            load_deca_params(tmp_path / "m.pkl")

        class Evil:
            def __reduce__(self):
                return os.system, ("true",)

        (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"exp": Evil()}))
        with pytest.raises(InputError, match="refusing to load .*evil.pkl: it references"):
            load_deca_params(tmp_path / "evil.pkl")
        with pytest.raises(InputError, match="refusing to load"):
            read_manipulator_input(tmp_path / "evil.pkl")

    def test_list_files(self, tmp_path):
        for index in (2, 0, 1):
            save_deca_params(tmp_path / deca_file_name(index), random_params(index))
        (tmp_path / "notes.txt").write_text("x")
        assert [p.name for p in list_deca_files(tmp_path)] == ["000000.pkl", "000001.pkl", "000002.pkl"]
        with pytest.raises(InputError, match="no such folder"):
            list_deca_files(tmp_path / "missing")

    def test_params_validation(self):
        with pytest.raises(ValueError, match="exp"):
            random_params(exp=np.zeros((1, 51)))
        with pytest.raises(ValueError, match="original_size"):
            random_params(original_size=(0, 10))
        with pytest.raises(ValueError, match="deca_file_name|frame_index"):
            deca_file_name(-1)


class TestManipulatorNumbers:
    def test_layout(self):
        params = random_params()
        values = to_manipulator_input(params)
        assert values.shape == (MANIPULATOR_INPUTS,) and values.dtype == np.float32
        assert values[0] == params.pose[0, 3]
        np.testing.assert_array_equal(values[1:], params.exp[0])

    def test_back_and_forth(self):
        params = random_params()
        values = np.random.default_rng(3).normal(size=MANIPULATOR_INPUTS).astype(np.float32)
        edited = from_manipulator_output(params, values)
        np.testing.assert_array_equal(to_manipulator_input(edited), values)
        np.testing.assert_array_equal(edited.pose[0, [0, 1, 2, 4, 5]], params.pose[0, [0, 1, 2, 4, 5]])
        np.testing.assert_array_equal(edited.shape, params.shape)
        np.testing.assert_array_equal(edited.cam, params.cam)
        with pytest.raises(ValueError, match="values"):
            from_manipulator_output(params, np.zeros(50))

    def test_manipulated_file_is_ned_format(self, tmp_path):
        values = np.arange(MANIPULATOR_INPUTS, dtype=np.float32) / 10
        save_manipulated(tmp_path / "000000.pkl", values)
        with open(tmp_path / "000000.pkl", "rb") as file:
            raw = pickle.load(file)
        assert set(raw) == {"exp", "pose"} and raw["pose"].shape == (1, 6) and raw["exp"].shape == (1, 50)
        assert raw["pose"][0, 3] == values[0] and not np.delete(raw["pose"][0], 3).any()
        np.testing.assert_array_equal(read_manipulator_input(tmp_path / "000000.pkl"), values)

    def test_full_file_gives_same_numbers(self, tmp_path):
        params = random_params()
        save_deca_params(tmp_path / "a.pkl", params)
        np.testing.assert_array_equal(read_manipulator_input(tmp_path / "a.pkl"), to_manipulator_input(params))


def test_preprocess_folder_end_to_end(backend, tmp_path):
    """Frames -> DECA/<frame>.pkl -> reload -> vertices in the frame (the backend's whole path)."""
    rng = np.random.default_rng(5)
    out = tmp_path / "DECA"
    out.mkdir()
    for index in range(3):
        frame = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
        points = np.array([[90.0, 50.0], [170.0, 150.0]]) + index
        save_deca_params(out / deca_file_name(index), backend.encode_frame(frame, points))
    files = list_deca_files(out)
    assert len(files) == 3
    params = load_deca_params(files[1])
    vertices = backend.vertices_frame(params)
    assert vertices.shape == (N_VERTS, 3) and np.isfinite(vertices).all()
    assert read_manipulator_input(files[2]).shape == (MANIPULATOR_INPUTS,)
