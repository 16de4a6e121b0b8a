"""The fast paths behind ``ned edit`` / ``ned preprocess`` give what the plain paths give.

- planar frames (:class:`ned.media.YuvImage`): RGB crops, regions, region write-back;
- :func:`ned.media.read_ahead` (background decoding) and ``VideoWriter.write_frame``;
- :meth:`WarpRenderer.render_planes` and ``render_region``: samples outside the blend mask
  are the decoder's, bit for bit, and the face matches the RGB renderer;
- ``render_video`` on planes: every luma sample outside the mask (and every chroma sample
  whose 2x2 block is outside it) reaches the encoder exactly as decoded;
- :func:`ned.morph.raster.render_nmfc_and_shape` equals the two separate renderers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from ned.errors import InputError
from ned.face.tracker import FaceTracker
from ned.media import (
    EncodeOptions,
    VideoWriter,
    WriteBehind,
    YuvImage,
    iter_frames,
    iter_planar_frames,
    probe,
    read_ahead,
    rgb_to_video_frame,
    write_test_video,
)
from ned.morph.raster import render_nmfc, render_nmfc_and_shape, render_shape
from ned.pipeline import analyse_clip, edited_landmarks, make_renderer, render_video
from ned.manipulate.plan import ManipulationSpec, plan_expressions
from ned.render.warp_renderer import RenderOptions
from ned.sample import make_sample_clip


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample_clip(tmp_path_factory.mktemp("fast") / "sample.mp4", seconds=1.0)


@pytest.fixture(scope="module")
def planar(sample):
    return list(iter_planar_frames(sample, max_frames=3))


@pytest.fixture(scope="module")
def edit(sample):
    """The sample's analysis and its landmarks edited to happy."""
    analysis = analyse_clip(sample, quiet=True)
    spec = ManipulationSpec.from_strings(["happy"])
    dst = edited_landmarks(analysis, plan_expressions(analysis.expressions(), spec, [], fps=float(analysis.info.fps)))
    return analysis, dst


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy() for p in frame.planes]


class TestYuvImage:
    def test_rgb_is_iter_frames_rgb(self, sample, planar):
        for a, b in zip(planar, iter_frames(sample, max_frames=3)):
            assert isinstance(a.image, YuvImage) and a.image.encodable
            np.testing.assert_array_equal(a.rgb, b.rgb)
            assert (a.index, a.pts, a.time_s) == (b.index, b.pts, b.time_s)

    def test_region_and_crop_match_the_rgb_frame(self, planar):
        image, rgb = planar[0].image, planar[0].rgb.astype(int)
        region = image.region_rgb(101, 51, 301, 250)                       # odd corners too
        assert region.shape == (199, 200, 3)
        assert np.abs(region - rgb[51:250, 101:301]).mean() < 2.5
        m = cv2.getRotationMatrix2D((200.0, 180.0), 12.0, 0.6)
        crop = image.warp_rgb(m, (96, 96))
        ref = cv2.warpAffine(planar[0].rgb, m, (96, 96), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert np.abs(crop.astype(int) - ref).mean() < 2.5

    def test_with_region_changes_only_what_changed(self, planar):
        image = planar[0].image
        before = image.region_rgb(100, 60, 300, 260)
        same = image.with_region(100, 60, before, before)
        for a, b in zip(_planes(same), (image.y, image.u, image.v)):
            np.testing.assert_array_equal(a, b)
        after = before.copy()
        after[40:80, 41:81] = 255 - after[40:80, 41:81]
        out = _planes(image.with_region(100, 60, before, after))
        changed = np.argwhere(out[0] != image.y)
        assert changed.min(0).tolist() >= [100, 141] and changed.max(0).tolist() <= [139, 180]
        keep = np.zeros((200, 200), bool)
        keep[40:60] = True                                                  # upper half kept: chroma only
        out = _planes(image.with_region(100, 60, before, after, keep=keep))
        assert (out[1][50:60] == image.u[50:60]).all() and (out[1][60:70] != image.u[60:70]).any()

    def test_with_planes_and_errors(self, planar):
        image = planar[0].image
        y = np.full((20, 30), 7, np.uint8)
        c = np.full((10, 15), 9, np.uint8)
        out = _planes(image.with_planes(10, 20, y, c, c))
        assert (out[0][20:40, 10:40] == 7).all() and (out[1][10:20, 5:20] == 9).all()
        assert (out[0][:20] == image.y[:20]).all()
        with pytest.raises(ValueError, match="even"):
            image.with_planes(11, 20, y, c, c)
        with pytest.raises(ValueError):
            image.region_rgb(10, 10, 10, 20)
        with pytest.raises(ValueError):
            YuvImage(av.VideoFrame(64, 64, "rgb24"))

    def test_rotated_or_odd_frames_fall_back_to_rgb(self, tmp_path):
        frames = [np.full((48, 64, 3), 100 + i, np.uint8) for i in range(3)]
        rotated = write_test_video(tmp_path / "r.mp4", frames, rotation_deg=90)
        odd = write_test_video(tmp_path / "o.mp4", [f[:47, :63] for f in frames], pix_fmt="yuv444p")
        for path in (rotated, odd):
            for a, b in zip(iter_planar_frames(path), iter_frames(path)):
                assert isinstance(a.image, np.ndarray)
                np.testing.assert_array_equal(a.rgb, b.rgb)


class TestReadAhead:
    def test_order_and_errors(self, sample):
        assert [f.index for f in read_ahead(iter_frames(sample), 2)] == list(range(probe(sample).frame_count))

        def broken():
            yield 1
            raise InputError("bad frame")

        got = []
        with pytest.raises(InputError, match="bad frame"):
            for item in read_ahead(broken()):
                got.append(item)
        assert got == [1]
        with pytest.raises(ValueError):
            list(read_ahead([], 0))

    def test_leaving_early_stops_the_thread(self):
        produced = []

        def endless():
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1

        before = threading.active_count()
        it = read_ahead(endless(), 3)
        assert next(it) == 0
        it.close()
        time.sleep(0.2)
        assert threading.active_count() == before
        assert len(produced) <= 6


class TestWriteFrame:
    def test_decoded_frames_go_to_the_encoder_unconverted(self, sample, tmp_path):
        info = probe(sample)
        out = tmp_path / "t.mp4"
        with VideoWriter(out, width=info.width, height=info.height, fps=info.fps, audio_from=sample,
                         time_base=info.time_base) as writer:
            for frame in iter_planar_frames(sample):
                assert writer.accepts(frame.image)
                writer.write_frame(frame.image.frame, pts=frame.pts)
            with pytest.raises(ValueError, match="expected"):
                writer.write_frame(av.VideoFrame(32, 32, "yuv420p"), pts=10**9)
        got = probe(out)
        assert (got.frame_count, got.fps, got.has_audio) == (info.frame_count, info.fps, True)
        for a, b in zip(iter_frames(sample), iter_frames(out)):
            assert np.abs(a.rgb.astype(int) - b.rgb).mean() < 1.5
        with av.open(str(out)) as container:  # keyframes are the encoder's, not the source's
            keys = [p.is_keyframe for p in container.demux(video=0) if p.size]
        assert keys[0] and sum(keys) == 1


class TestWriteBehind:
    def test_same_file_as_writing_directly(self, sample, tmp_path):
        info = probe(sample)
        frames = list(iter_frames(sample))
        for name, behind in (("a.mp4", False), ("b.mp4", True)):
            with VideoWriter(tmp_path / name, width=info.width, height=info.height, fps=info.fps) as writer:
                sink = WriteBehind(writer, 2) if behind else writer
                for f in frames:
                    sink.write(f.rgb, pts=f.pts)
                if behind:
                    sink.close()
        assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()

    def test_errors_reach_the_caller_and_nothing_is_left(self, sample, tmp_path):
        info = probe(sample)
        rgb = next(iter(iter_frames(sample))).rgb
        out = tmp_path / "e.mp4"
        with pytest.raises(ValueError, match="pts must increase"):
            with VideoWriter(out, width=info.width, height=info.height, fps=info.fps) as writer, \
                    WriteBehind(writer) as sink:
                sink.write(rgb, pts=5)
                sink.write(rgb, pts=5)
        assert not out.exists() and list(tmp_path.iterdir()) == []
        with pytest.raises(KeyboardInterrupt):
            with VideoWriter(out, width=info.width, height=info.height, fps=info.fps) as writer, \
                    WriteBehind(writer) as sink:
                sink.write(rgb)
                raise KeyboardInterrupt
        assert list(tmp_path.iterdir()) == []


class TestRenderPlanes:
    def test_outside_the_mask_is_the_decoders_and_the_face_matches_rgb(self, planar, edit):
        analysis, dst = edit
        renderer = make_renderer(RenderOptions())
        assert renderer.renders_planes
        image, t = planar[1].image, planar[1].index
        out = renderer.render_planes(image.y, image.u, image.v, analysis.landmarks[t], dst[t])
        assert out.rendered
        x0, y0, x1, y1 = (int(v) for v in out.box)
        assert x0 % 2 == y0 % 2 == x1 % 2 == y1 % 2 == 0
        outside = out.mask == 0
        assert outside.any() and (~outside).any()
        np.testing.assert_array_equal(out.y[outside], image.y[y0:y1, x0:x1][outside])
        block_outside = cv2.resize(out.mask, (out.u.shape[1], out.u.shape[0]), interpolation=cv2.INTER_AREA) == 0
        np.testing.assert_array_equal(out.u[block_outside], image.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2][block_outside])
        assert (out.y != image.y[y0:y1, x0:x1]).any()
        # Same face as the RGB renderer (within a few grey levels on average).
        rgb = renderer.render(image.rgb(), analysis.landmarks[t], dst[t]).frame
        frame = image.with_planes(x0, y0, out.y, out.u, out.v).to_ndarray(format="rgb24")
        inside = (~outside)
        diff = np.abs(frame[y0:y1, x0:x1].astype(int) - rgb[y0:y1, x0:x1])[inside]
        assert diff.mean() < 2.0

    def test_region_of_a_planar_picture_matches_the_rgb_render(self, planar, edit):
        analysis, dst = edit
        renderer = make_renderer(RenderOptions())
        image, t = planar[2].image, planar[2].index
        a = renderer.render_region(image, analysis.landmarks[t], dst[t])
        b = renderer.render_region(image.rgb(), analysis.landmarks[t], dst[t])
        np.testing.assert_array_equal(a.box, b.box)
        assert np.abs(a.image.astype(int) - b.image).mean() < 2.5
        np.testing.assert_array_equal(a.image[a.mask == 0], a.source[a.mask == 0])

    def test_missing_face_and_bad_input(self, planar, edit):
        renderer = make_renderer(RenderOptions())
        image = planar[0].image
        nan = np.full((478, 3), np.nan, np.float32)
        assert not renderer.render_planes(image.y, image.u, image.v, nan, nan).rendered
        with pytest.raises(ValueError):
            renderer.render_planes(image.y[:, :-1], image.u, image.v, edit[0].landmarks[0], edit[1][0])


def test_render_video_on_planes_keeps_every_sample_outside_the_mask(sample, edit, tmp_path, monkeypatch):
    analysis, dst = edit
    written: list[tuple[int, list[np.ndarray]]] = []
    original = VideoWriter.write_frame

    def spy(self, frame, *, pts=None):
        written.append((pts, _planes(frame)))
        return original(self, frame, pts=pts)

    monkeypatch.setattr(VideoWriter, "write_frame", spy)
    renderer = make_renderer(RenderOptions())
    edited = render_video(sample, tmp_path / "o.mp4", analysis.landmarks, dst, renderer, info=analysis.info,
                          encode=EncodeOptions(), comment="t", quiet=True)
    assert edited == int(analysis.valid.sum()) and len(written) == analysis.info.frame_count
    changed_any = False
    for (pts, planes), frame in zip(written, iter_planar_frames(sample)):
        assert pts == frame.pts
        image = frame.image
        out = renderer.render_planes(image.y, image.u, image.v, analysis.landmarks[frame.index], dst[frame.index])
        x0, y0, x1, y1 = (int(v) for v in out.box)
        mask = np.zeros(image.y.shape, np.float32)
        mask[y0:y1, x0:x1] = out.mask
        np.testing.assert_array_equal(planes[0][mask == 0], image.y[mask == 0])
        block = cv2.resize(mask, (image.u.shape[1], image.u.shape[0]), interpolation=cv2.INTER_AREA) == 0
        np.testing.assert_array_equal(planes[1][block], image.u[block])
        np.testing.assert_array_equal(planes[2][block], image.v[block])
        changed_any |= bool((planes[0] != image.y).any())
    assert changed_any


def test_tracking_planar_frames_matches_rgb_frames(sample):
    info = probe(sample)
    a = np.stack([o.landmarks for _, o in FaceTracker().track(iter_planar_frames(sample), fps=info.fps)])
    b = np.stack([o.landmarks for _, o in FaceTracker().track(iter_frames(sample), fps=info.fps)])
    eye = np.linalg.norm(b[:, 33, :2] - b[:, 263, :2], axis=-1)
    assert (np.linalg.norm(a[..., :2] - b[..., :2], axis=-1) / eye[:, None]).mean() < 0.01


def test_nmfc_and_shape_together_equal_the_separate_renderers(edit):
    analysis, _ = edit
    for t in (0, 5):
        v = analysis.landmarks[t, :468].copy()
        v[:, :2] -= v[:, :2].min(0) - 10
        v *= 200.0 / float(v[:, :2].max())
        nmfc, shape = render_nmfc_and_shape(v, (256, 240))
        np.testing.assert_array_equal(nmfc, render_nmfc(v, (256, 240)))
        np.testing.assert_array_equal(shape, render_shape(v, (256, 240)))
        assert nmfc.any() and shape.any()


def test_render_planes_with_appearance_matches_the_rgb_step_and_keeps_outside_samples(planar, edit):
    from ned.appearance.hook import AppearanceFrame, ExpressionAppearance
    from ned.appearance.options import AppearanceOptions

    analysis, dst = edit
    appearance = ExpressionAppearance(AppearanceOptions(mode="maps"))
    renderer = make_renderer(RenderOptions(), appearance)
    assert renderer.renders_planes
    image, t = planar[1].image, planar[1].index
    src_w = analysis.expressions()[t]
    tgt_w = np.clip(src_w + 0.6, 0.0, 1.0).astype(np.float32)
    payload = AppearanceFrame(src_w, tgt_w)
    out = renderer.render_planes(image.y, image.u, image.v, analysis.landmarks[t], dst[t], payload=payload)
    plain = make_renderer(RenderOptions()).render_planes(image.y, image.u, image.v, analysis.landmarks[t], dst[t])
    x0, y0, x1, y1 = (int(v) for v in out.box)
    outside = out.mask == 0
    np.testing.assert_array_equal(out.y[outside], image.y[y0:y1, x0:x1][outside])
    np.testing.assert_array_equal(out.u, plain.u)      # chroma untouched by the appearance step
    np.testing.assert_array_equal(out.v, plain.v)
    assert (out.y != plain.y).any()                    # the luma gain did something
    # no change of weights: exactly the plain planar render
    same = renderer.render_planes(image.y, image.u, image.v, analysis.landmarks[t], dst[t],
                                  payload=AppearanceFrame(src_w, src_w.copy()))
    np.testing.assert_array_equal(same.y, plain.y)
    # the RGB path's result (appearance on RGB, written back as a difference), near enough
    region = renderer.render_region(image, analysis.landmarks[t], dst[t], payload=payload)
    ref = image.with_region(int(region.box[0]), int(region.box[1]), region.source, region.image,
                            keep=region.mask == 0)
    got = image.with_planes(x0, y0, out.y, out.u, out.v)
    a, b = _planes(got)[0][y0:y1, x0:x1], _planes(ref)[0][y0:y1, x0:x1]
    assert np.abs(a.astype(int) - b)[out.mask > 0.5].mean() < 1.5


# --------------------------------------------------------------------------- BT.709 sources
@pytest.fixture(scope="module")
def bt709(sample, tmp_path_factory) -> Path:
    """The sample re-encoded as a phone would: BT.709 matrix, limited range, tagged (swscale)."""
    out = tmp_path_factory.mktemp("bt709") / "bt709.mp4"
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "12", "preset": "veryfast"})
        info = probe(sample)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
        stream.codec_context.colorspace = stream.codec_context.color_primaries = 1
        stream.codec_context.color_trc, stream.codec_context.color_range = 1, 1
        for f in iter_frames(sample):
            frame = av.VideoFrame.from_ndarray(f.rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range=1)
            frame.colorspace, frame.color_range = 1, 1
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out


class TestBt709:
    def test_planes_convert_with_the_bt709_matrix(self, bt709, sample):
        assert probe(bt709).ycbcr_matrix == "bt709" and probe(sample).ycbcr_matrix == "bt601"
        frame = next(iter_planar_frames(bt709, max_frames=1))
        image = frame.image
        assert isinstance(image, YuvImage) and image.matrix == "bt709" and image.encodable
        rgb = next(iter_frames(bt709, max_frames=1)).rgb.astype(int)  # FFmpeg's conversion
        error = np.abs(image.region_rgb(0, 0, 256, 256).astype(int) - rgb[:256, :256])
        assert error.mean() < 2.5

    def test_saturated_colours(self):
        """Pure colours, where BT.601 and BT.709 differ most (red by about 20 levels)."""
        rgb = np.zeros((32, 64, 3), np.uint8)
        for k, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]):
            rgb[:, 16 * k:16 * (k + 1)] = colour
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU709",
                                                                         dst_color_range=1)
        frame.colorspace, frame.color_range = 1, 1
        image = YuvImage(frame)
        got = image.region_rgb(0, 0, 64, 32)[:, [6, 22, 38, 54]].astype(int)  # block centres
        assert np.abs(got - rgb[:, [6, 22, 38, 54]]).max() <= 3
        frame.colorspace = 6  # the same samples read as BT.601: visibly other colours
        assert np.abs(YuvImage(frame).region_rgb(0, 0, 64, 32)[:, [6, 22, 38, 54]].astype(int)
                      - rgb[:, [6, 22, 38, 54]]).max() > 15

    def test_write_back_decodes_to_what_was_written(self, bt709):
        image = next(iter_planar_frames(bt709, max_frames=1)).image
        before = image.region_rgb(100, 60, 300, 260)
        after = before.copy()
        after[40:120, 40:120] = (200, 40, 90)
        frame = image.with_region(100, 60, before, after)
        back = frame.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range=1)
        assert np.abs(back[100:180, 140:220].astype(int) - (200, 40, 90)).mean() < 3.0

    def test_rgb_to_video_frame_bt709_matches_swscale(self):
        rng = np.random.default_rng(0)
        rgb = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
        ours = rgb_to_video_frame(rgb, "yuv420p", "bt709")
        theirs = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU709",
                                                                          dst_color_range=1)
        assert ours.colorspace == 1
        for a, b in zip(_planes(ours), _planes(theirs)):
            assert np.abs(a.astype(int) - b).mean() < 1.5
        with pytest.raises(ValueError, match="matrix"):
            rgb_to_video_frame(rgb, "yuv420p", "bt2020")

    def test_edit_of_a_bt709_clip_runs_on_its_planes(self, bt709, tmp_path, monkeypatch):
        analysis = analyse_clip(bt709, quiet=True)
        spec = ManipulationSpec.from_strings(["surprised"])
        dst = edited_landmarks(analysis, plan_expressions(analysis.expressions(), spec, [], fps=25.0))
        calls = []
        original = VideoWriter.write_frame
        monkeypatch.setattr(VideoWriter, "write_frame", lambda self, frame, *, pts=None: (
            calls.append(pts), original(self, frame, pts=pts))[1])
        out = tmp_path / "o.mp4"
        render_video(bt709, out, analysis.landmarks, dst, make_renderer(RenderOptions()), info=analysis.info,
                     encode=EncodeOptions(crf=12), comment="t", quiet=True)
        assert len(calls) == analysis.info.frame_count  # every frame went through unconverted
        assert probe(out).ycbcr_matrix == "bt709"
        src = next(iter_frames(bt709, max_frames=1)).rgb.astype(int)
        got = next(iter_frames(out, max_frames=1)).rgb.astype(int)
        assert np.abs(got[:40, :40] - src[:40, :40]).mean() < 1.5  # background colours unchanged
