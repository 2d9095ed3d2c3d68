"""Multi-scale tiled inference, with real (pointwise, colour-based) tile predictors."""

from __future__ import annotations

import numpy as np
import pytest

from spino_core.inference import (
    count_forwards,
    multiscale_predict,
    multiscale_predict_many,
    tile_grid,
)

K = 19


def pointwise_predict(
    tiles: np.ndarray, want_semantic: bool = True, want_boundary: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each pixel's prediction from its own colour: class scores peak at grey * 18 / 255,
    boundary probability = red / 255. A tile resized by 1 maps back unchanged."""
    x = tiles.astype(np.float32)  # (N, h, w, 3)
    grey = x.mean(axis=3) * (K - 1) / 255.0  # (N, h, w)
    logits = -((grey[:, None] - np.arange(K, dtype=np.float32)[None, :, None, None]) ** 2)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)  # (N, K, h, w)
    return (probs if want_semantic else None), (x[..., 0] / 255.0 if want_boundary else None)


class Recorder:
    """Wraps a predictor; records (batch size, want_semantic, want_boundary) per call."""

    def __init__(self, fn=pointwise_predict) -> None:
        self.fn = fn
        self.calls: list[tuple[int, bool, bool]] = []

    def __call__(self, tiles, want_semantic, want_boundary):
        self.calls.append((len(tiles), want_semantic, want_boundary))
        return self.fn(tiles, want_semantic, want_boundary)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _run(image, predict, sem, bnd, input_hw, **kw):
    return multiscale_predict(
        image,
        predict,
        input_hw=input_hw,
        semantic_scales=sem,
        boundary_scales=bnd,
        keep_probs=True,
        **kw,
    )


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("h", "w"), [(32, 64), (31, 67), (5, 3), (1, 1)])
@pytest.mark.parametrize("scale", [1, 2, 3, 5, 7])
def test_tiles_cover_every_pixel_exactly_once(h: int, w: int, scale: int) -> None:
    cover = np.zeros((h, w), np.int32)
    tiles = tile_grid(h, w, scale)
    for y0, y1, x0, x1 in tiles:
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    if h >= scale and w >= scale:
        assert len(tiles) == scale * scale
        heights = {y1 - y0 for y0, y1, _, _ in tiles}
        widths = {x1 - x0 for _, _, x0, x1 in tiles}
        assert max(heights) - min(heights) <= 1 and max(widths) - min(widths) <= 1


def test_scale_one_is_the_whole_image() -> None:
    assert tile_grid(31, 67, 1) == [(0, 31, 0, 67)]
    with pytest.raises(ValueError, match="scale"):
        tile_grid(31, 67, 0)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_tiles_go_back_where_they_came_from(scale: int) -> None:
    # Tiles exactly the input size are not resized: the result must equal the pointwise
    # prediction of the whole image, so any misplaced tile shows.
    image = _image(32, 64)
    res = _run(image, pointwise_predict, [scale], [scale], (32 // scale, 64 // scale))
    sem, bnd = pointwise_predict(image[None])
    np.testing.assert_allclose(res.semantic_probs, sem[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.boundary_probs, bnd[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(res.semantic, sem[0].argmax(0))
    np.testing.assert_allclose(res.confidence, sem[0].max(0), atol=1e-6)
    np.testing.assert_array_equal(res.boundary, bnd[0] > 0.5)
    assert res.n_forwards == scale * scale


def test_non_divisible_sizes_weight_every_pixel_once() -> None:
    # A constant image gives constant tiles at every scale; a pixel covered twice or never
    # (or a wrong normalisation) would break the constant.
    image = np.full((31, 67, 3), (200, 90, 40), np.uint8)
    res = _run(image, pointwise_predict, [1, 2, 3, 5], [3, 4, 7], (8, 12))
    sem, bnd = pointwise_predict(image[None, :1, :1])
    np.testing.assert_allclose(res.semantic_probs, np.broadcast_to(sem[0], (K, 31, 67)), atol=1e-5)
    np.testing.assert_allclose(res.boundary_probs, bnd[0, 0, 0], atol=1e-5)
    assert res.semantic.shape == (31, 67) and res.semantic.dtype == np.uint8
    assert res.boundary.dtype == bool and res.confidence.dtype == np.float32


# --------------------------------------------------------------------------- averaging


def test_probabilities_are_averaged_over_each_heads_scales() -> None:
    image = _image(30, 50, seed=1)
    hw = (12, 20)
    one = {s: _run(image, pointwise_predict, [s], [s], hw) for s in (1, 2, 3)}
    res = _run(image, pointwise_predict, [1, 2], [2, 3], hw, boundary_threshold=0.4)
    want_sem = (one[1].semantic_probs + one[2].semantic_probs) / 2
    want_bnd = (one[2].boundary_probs + one[3].boundary_probs) / 2
    np.testing.assert_allclose(res.semantic_probs, want_sem, atol=1e-6)
    np.testing.assert_allclose(res.boundary_probs, want_bnd, atol=1e-6)
    np.testing.assert_array_equal(res.boundary, want_bnd > 0.4)
    np.testing.assert_array_equal(res.semantic, want_sem.argmax(0))
    # A scale listed twice weighs twice (and is still predicted once).
    dup = _run(image, pointwise_predict, [1, 1, 2], [3], hw)
    want = (2 * one[1].semantic_probs + one[2].semantic_probs) / 3
    np.testing.assert_allclose(dup.semantic_probs, want, atol=1e-6)
    assert dup.n_forwards == 1 + 4 + 9


def test_sharing_features_saves_forwards_not_accuracy() -> None:
    image = _image(40, 60, seed=2)
    shared, separate = Recorder(), Recorder()
    kw = {"tile_batch_size": 4}
    a = _run(image, shared, [1, 2, 3], [3, 4, 5], (10, 15), **kw)
    b = _run(image, separate, [1, 2, 3], [3, 4, 5], (10, 15), share_features=False, **kw)
    assert a.n_forwards == sum(n for n, _, _ in shared.calls) == 1 + 4 + 9 + 16 + 25 == 55
    assert b.n_forwards == sum(n for n, _, _ in separate.calls) == (1 + 4 + 9) + (9 + 16 + 25)
    assert a.n_forwards < b.n_forwards
    assert count_forwards([1, 2, 3], [3, 4, 5]) == 55
    assert count_forwards([1, 2, 3], [3, 4, 5], share=False) == 64
    # Only scale 3's nine tiles need both heads; no call mixes flags; batches <= 4 tiles.
    assert sum(n for n, s, b_ in shared.calls if s and b_) == 9
    assert all(n <= 4 for n, _, _ in shared.calls + separate.calls)
    assert not any(s and b_ for _, s, b_ in separate.calls)
    np.testing.assert_allclose(a.semantic_probs, b.semantic_probs, atol=1e-6)
    np.testing.assert_allclose(a.boundary_probs, b.boundary_probs, atol=1e-6)


def test_batch_size_does_not_change_the_result() -> None:
    image = _image(33, 47, seed=3)
    ref = _run(image, pointwise_predict, [1, 3], [2, 3], (11, 16), tile_batch_size=1)
    for batch in (2, 7, 64):
        res = _run(image, pointwise_predict, [1, 3], [2, 3], (11, 16), tile_batch_size=batch)
        np.testing.assert_array_equal(res.semantic_probs, ref.semantic_probs)
        np.testing.assert_array_equal(res.boundary_probs, ref.boundary_probs)


def test_without_keep_probs_no_probability_cube_is_returned() -> None:
    res = multiscale_predict(
        _image(20, 20),
        pointwise_predict,
        input_hw=(10, 10),
        semantic_scales=[1],
        boundary_scales=[2],
    )
    assert res.semantic_probs is None and res.n_forwards == 5


def test_bad_predictor_output_is_reported() -> None:
    def wrong_shape(tiles, want_semantic, want_boundary):
        sem, bnd = pointwise_predict(tiles, want_semantic, want_boundary)
        return sem, (None if bnd is None else bnd[:, :-1])

    with pytest.raises(ValueError, match="boundary output has shape"):
        _run(_image(20, 20), wrong_shape, [1], [1], (10, 10))

    def no_semantic(tiles, want_semantic, want_boundary):
        return None, pointwise_predict(tiles)[1]

    with pytest.raises(ValueError, match="no semantic output"):
        _run(_image(20, 20), no_semantic, [1], [1], (10, 10))
    with pytest.raises(ValueError, match="uint8"):
        _run(_image(20, 20).astype(np.float32), pointwise_predict, [1], [1], (10, 10))


# --------------------------------------------------------------------------- torch adapter


def test_torch_predictor_runs_one_forward_for_both_heads() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from spino_core.inference.predictor import TorchPredictor
    from spino_core.models.heads import BoundaryHead, SemanticHead

    class PatchMeans(nn.Module):
        """Stand-in backbone: (B, 3, H, W) -> [(B, 8, H/14, W/14)], counting its calls."""

        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, 8, 1)
            self.calls = 0

        def forward(self, images, size):
            self.calls += 1
            x = nn.functional.interpolate(images.float() / 255, size=size, mode="bilinear")
            return [self.proj(nn.functional.avg_pool2d(x, 14))]

    torch.manual_seed(0)
    backbone = PatchMeans()
    predict = TorchPredictor(
        backbone, SemanticHead(8, [6]), BoundaryHead(8, [6]), "cpu", boundary_scale=0.25
    )
    tiles = _image(28, 56)[None].repeat(3, axis=0)
    sem, bnd = predict(tiles, True, True)
    assert sem.shape == (3, K, 28, 56) and sem.dtype == np.float32
    np.testing.assert_allclose(sem.sum(axis=1), 1.0, atol=1e-5)
    assert bnd.shape == (3, 28, 56) and ((bnd >= 0) & (bnd <= 1)).all()
    assert backbone.calls == 1 and predict.n_forwards == 3
    only_bnd = predict(tiles, False, True)
    assert only_bnd[0] is None
    np.testing.assert_allclose(only_bnd[1], bnd, atol=1e-6)
    res = multiscale_predict(
        _image(40, 70),
        predict,
        input_hw=(28, 56),
        semantic_scales=[1, 2],
        boundary_scales=[2, 3],
        tile_batch_size=8,
    )
    assert res.semantic.shape == (40, 70) and res.n_forwards == 1 + 4 + 9


def test_torch_predictor_bf16_and_compiled_paths_agree_with_fp32() -> None:
    """bf16 autocast stays close to fp32; the compiled path (wired here with the "eager"
    backend, no compiler on CI) pads small batches and returns exactly the same outputs."""
    torch = pytest.importorskip("torch")
    from spino_core.config import BackboneConfig
    from spino_core.inference.predictor import TorchPredictor
    from spino_core.models.backbone import create_backbone
    from spino_core.models.heads import LabelHeads

    backbone = create_backbone(
        BackboneConfig(name="vit_small_patch14_dinov2.lvd142m", weights="random", blocks=[11])
    )
    torch.manual_seed(0)
    heads = LabelHeads(backbone.out_channels, [16], [16]).eval()
    tiles = np.stack([_image(28, 56, seed) for seed in range(3)])

    def make(**kw):
        return TorchPredictor(backbone, heads.semantic, heads.boundary, "cpu", **kw)

    ref_sem, ref_bnd = make()(tiles, True, True)
    sem, bnd = make(precision="bf16")(tiles, True, True)
    assert np.abs(sem - ref_sem).max() < 0.05 and np.abs(bnd - ref_bnd).max() < 0.05
    compiled = make(compile="eager")
    compiled(tiles, True, True)  # the largest batch: later ones are padded to 3 tiles
    one_sem, one_bnd = compiled(tiles[1:2], True, True)
    alone_sem, alone_bnd = make()(tiles[1:2], True, True)
    assert one_sem.shape == (1, K, 28, 56) and compiled.n_forwards == 4
    np.testing.assert_allclose(one_sem, alone_sem, atol=1e-5)
    np.testing.assert_allclose(one_bnd, alone_bnd, atol=1e-5)
    with pytest.raises(ValueError, match="precision"):
        make(precision="fp16")


# --------------------------------------------------------------------------- several images


@pytest.mark.parametrize(("sem", "bnd"), [([1, 2, 3], [3, 4, 5]), ([1, 2, 3], [2]), ([2], [1, 3])])
def test_images_batched_together_give_each_image_its_own_result(sem, bnd) -> None:
    """Tiles of several images share batches (fewer, fuller calls); each image's result is
    bit-identical to predicting it alone, whatever the batch size or overlap."""
    images = [_image(24, 40, 1), _image(17, 33, 2), _image(24, 40, 3)]
    alone = [_run(im, pointwise_predict, sem, bnd, (12, 20), tile_batch_size=4) for im in images]
    for batch, overlap in [(1, False), (5, True), (200, False), (200, True)]:
        rec = Recorder()
        many = multiscale_predict_many(
            images,
            rec,
            input_hw=(12, 20),
            semantic_scales=sem,
            boundary_scales=bnd,
            keep_probs=True,
            tile_batch_size=batch,
            overlap=overlap,
        )
        for one, res in zip(alone, many, strict=True):
            np.testing.assert_array_equal(res.semantic_probs, one.semantic_probs)
            np.testing.assert_array_equal(res.boundary_probs, one.boundary_probs)
            np.testing.assert_array_equal(res.semantic, one.semantic)
            assert res.n_forwards == one.n_forwards == count_forwards(sem, bnd)
        assert sum(n for n, _, _ in rec.calls) == 3 * count_forwards(sem, bnd)
        if batch == 200:  # one call per group of flags for all three images
            assert len(rec.calls) == len({(s in sem, s in bnd) for s in {*sem, *bnd}})


@pytest.mark.parametrize("k", [1, 3, 5, 19])
@pytest.mark.parametrize(("src", "dst"), [((64, 128), (32, 64)), ((28, 56), (13, 23)),
                                          ((28, 56), (40, 70)), ((28, 56), (28, 56))])  # fmt: skip
def test_resizing_planes_matches_resizing_the_transposed_array(k, src, dst) -> None:
    """The fast path (cv2.merge straight from the (K, h, w) planes, added group by group)
    gives the same bits as the reference transpose-resize-add, exact 2x shrinks (cv2's fast
    area path) included, with and without a weight."""
    from spino_core.inference.multiscale import _accumulate, _accumulate_planes, _resize

    rng = np.random.default_rng(k)
    planes = rng.random((k, *src), dtype=np.float32)
    start = rng.random((*dst, k), dtype=np.float32)
    for weight in (1, 2):
        reference, fast = start.copy(), start.copy()
        hwk = _resize(np.ascontiguousarray(planes.transpose(1, 2, 0)), dst).reshape(*dst, k)
        _accumulate(reference, hwk, weight)
        _accumulate_planes(fast, planes, weight)
        np.testing.assert_array_equal(fast, reference)


# --------------------------------------------------------------------------- threshold


def test_boundary_threshold_is_inclusive_as_the_official_093_rule() -> None:
    """Official SPINO keeps a pixel as interior when p(non-boundary) > 0.93, i.e. a pixel is
    boundary when p(boundary) >= 0.07: a probability equal to the threshold is boundary."""
    probs = np.array([0.0, 0.06, 0.0699, 0.07, 0.0701, 0.5, 0.93, 1.0], np.float32)

    def constant(tiles, want_semantic=True, want_boundary=True):
        n, h, w = tiles.shape[:3]
        sem = np.full((n, K, h, w), 1.0 / K, np.float32) if want_semantic else None
        return sem, (np.broadcast_to(probs, (n, h, w)).copy() if want_boundary else None)

    image = _image(1, len(probs))
    res = _run(image, constant, [1], [1], (1, len(probs)), boundary_threshold=0.07)
    official = (1.0 - probs.astype(np.float64)) <= 0.93  # not (p_nonboundary > 0.93)
    np.testing.assert_array_equal(res.boundary[0], [0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(res.boundary[0], official)
