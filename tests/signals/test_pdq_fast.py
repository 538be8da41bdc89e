"""The compiled PDQ pixel path: kernels equal the dense products, one decode per image, re-framed variants.

Conformance with Meta's reference (bit-for-bit core, end to end within 10 bits) is in test_pdq.py; these tests
pin the pieces the fast path is built from to their plain numpy definitions.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from safeset.demo import PHOTOS
from safeset.signals import pdq, pdq_kernels
from safeset.signals.images import image_problem
from safeset.signals.pdq_variants import ROBUST_REFRAMES, UPSCALED, UPSCALED_FLIPS


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo(name: str, long_side: int = 480) -> Image.Image:
    with Image.open(PHOTOS / f"{name}.jpg") as image:
        rgb = image.convert("RGB")
    scale = long_side / max(rgb.size)
    return rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.LANCZOS)


sizes = st.tuples(st.integers(5, 300), st.integers(5, 300))


@settings(max_examples=40, deadline=None)
@given(size=sizes, scale=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**32 - 1))
def test_gray_kernel_equals_the_dense_weights(size: tuple[int, int], scale: int, seed: int) -> None:
    rows, cols = size
    reduced = np.random.default_rng(seed).integers(0, 256, (-(-rows // scale), -(-cols // scale)), dtype=np.uint8)
    pixels = pdq._Pixels(reduced, rows, cols, scale)
    out = np.zeros((64, 64))
    pixels.block(out)
    dense = (pdq.fast_weights(rows, cols, scale).astype(np.float64) @ reduced) @ pdq.fast_weights(
        cols, rows, scale
    ).astype(np.float64).T
    assert np.allclose(out, dense, rtol=0, atol=1e-3)  # float32 dense weights; the kernel sums in float64


@settings(max_examples=30, deadline=None)
@given(size=sizes, seed=st.integers(0, 2**32 - 1))
def test_rgb_kernel_equals_luma_then_blur_decimate(size: tuple[int, int], seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = np.zeros((64, 64))
    pdq._Pixels(rgb, *size, 1).block(out)
    luma = pdq.luma_from_rgb(rgb)  # sizes stay below the reference tool's 512-px resize
    assert np.allclose(out, pdq.downsample_64(luma), rtol=0, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(size=sizes, seed=st.integers(0, 2**32 - 1))
def test_canvas_block_is_the_enlarged_picture_blurred_and_its_flips_the_reversed_pixels(
    size: tuple[int, int], seed: int
) -> None:
    rows, cols = size
    gray = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    pixels = pdq._Pixels(gray, rows, cols, 1)
    out = np.zeros((64, 64))
    pixels.block(out, UPSCALED)
    canvas = pdq.blur_decimate_weights(512)
    enlarged = pdq.linear_resize_matrix(rows, 512) @ gray @ pdq.linear_resize_matrix(cols, 512).T
    assert np.allclose(out, canvas @ enlarged @ canvas.T, rtol=0, atol=1e-9)
    four = np.zeros((2, 2, 64, 64))
    pixels.flipped_blocks(four, UPSCALED)
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        flipped = gray[:: -1 if r else 1, :: -1 if c else 1]
        pdq._Pixels(np.ascontiguousarray(flipped), rows, cols, 1).block(out, UPSCALED)
        assert np.allclose(four[r, c], out, rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), spread=st.floats(0.01, 80), smooth=st.booleans())
def test_quality_kernel_equals_the_reference_formula(seed: int, spread: float, smooth: bool) -> None:
    block = np.random.default_rng(seed).normal(128, spread, (64, 64))
    if smooth:
        block = np.cumsum(block, axis=0) / 8
    assert pdq_kernels.quality_of_block(block) == int(pdq.quality_scores(block))


def test_batched_dct_equals_one_block_at_a_time() -> None:
    blocks = np.random.default_rng(1).normal(size=(3, 2, 64, 64))
    batched = pdq.dct_16(blocks)
    for i in range(3):
        for j in range(2):
            assert np.allclose(batched[i, j], pdq.dct_16(blocks[i, j]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("long_side", [200, 480, 700, 1300, 2400])  # fast: scales 1, 1, 2, 4, 8
def test_libjpeg_path_gives_the_pillow_path_hash(long_side: int, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [jpeg(photo(name, long_side)) for name in ("coffee", "astronaut", "gravel")]
    progressive = io.BytesIO()
    photo("chelsea", long_side).save(progressive, "JPEG", quality=75, progressive=True, subsampling=1)
    blobs.append(progressive.getvalue())
    ours = {mode: pdq.hash_images(blobs, mode) for mode in pdq.MODES}
    monkeypatch.setattr(pdq, "_decode_jpeg", lambda *args: None)
    for mode in pdq.MODES:
        pillow = pdq.hash_images(blobs, mode)
        assert np.array_equal(ours[mode].hashes, pillow.hashes), mode
        assert np.array_equal(ours[mode].quality, pillow.quality), mode


def _damaged(blob: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(blob[: max(2, len(blob) - cut)])
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data)


BASE_JPEG = jpeg(photo("chelsea", 300), 80)


@settings(max_examples=60, deadline=None)
@given(
    cut=st.integers(0, len(BASE_JPEG)),
    flips=st.lists(st.tuples(st.integers(0, len(BASE_JPEG)), st.integers(0, 255)), max_size=4),
    mode=st.sampled_from(pdq.MODES),
)
def test_damaged_bytes_are_reasons_and_the_decode_is_the_image_check(
    cut: int, flips: list[tuple[int, int]], mode: str
) -> None:
    blob = _damaged(BASE_JPEG, cut, flips)
    result = pdq.hash_images([blob, None], mode)
    assert result.decoded is not None and not result.decoded[1] and result.errors[1] == "no image"
    if result.decoded[0]:
        assert result.errors[0] is None or result.errors[0].startswith("unhashable image")
    else:
        assert not result.valid[0] and result.errors[0]
        assert image_problem(blob) is not None  # what the decode refused, the separate check refuses too


def test_mixed_batch_keeps_rows_apart() -> None:
    good = jpeg(photo("rocket", 320))
    tiny = jpeg(Image.new("RGB", (4, 40), "gray"))
    png = io.BytesIO()
    photo("coffee", 320).save(png, "PNG")
    for mode in pdq.MODES:
        batch = pdq.hash_images([good, None, tiny, b"\xff\xd8\xff\xe0 not really", png.getvalue(), good], mode)
        assert batch.valid.tolist() == [True, False, True, False, True, True]
        assert not batch.hashes[2].any() and batch.quality[2] == 0  # the reference's answer below 5 px
        alone = pdq.hash_images([good], mode)
        assert np.array_equal(batch.hashes[0], alone.hashes[0]) and np.array_equal(batch.hashes[5], alone.hashes[0])


def test_an_empty_reframe_is_the_plain_hash() -> None:
    blob = jpeg(photo("bridge", 480))
    plain = pdq.Reframe("none")
    result = pdq.hash_images([blob], "fast", reframes=(plain,))
    assert result.reframed is not None and np.array_equal(result.reframed[0, 0], result.hashes[0])


def test_repadding_brings_a_cropped_copy_back_within_the_radius() -> None:
    found_plain = found_robust = 0
    for name in ("coffee", "astronaut", "rocket", "chelsea", "bridge", "camera"):
        original = photo(name)
        bank = pdq.hash_images([jpeg(original)], "exact").hashes[0]
        w, h = original.size
        cut = 0.025
        copy = original.crop((round(w * cut), round(h * cut), w - round(w * cut), h - round(h * cut)))
        query = pdq.hash_images([jpeg(copy, 85)], "fast", reframes=ROBUST_REFRAMES)
        plain = int(pdq.popcount_distance(query.hashes[0], bank))
        assert query.reframed is not None
        best = int(pdq.popcount_distance(query.reframed[0], bank).min())
        found_plain += plain <= 31
        found_robust += min(best, plain) <= 31
    # Measured: plain 36-70 bits (none found), re-padded 14-26 bits (all found) at 2.5 % per side.
    assert found_plain <= 2 and found_robust >= 5


def test_flip_plan_matches_the_sign_plan() -> None:
    dct = np.random.default_rng(3).normal(size=(16, 16))
    rows_sign = np.where(np.arange(16) % 2 == 1, 1.0, -1.0)[:, None]  # (-1)^frequency, frequency = index + 1
    cols_sign = rows_sign.T
    flipped = np.stack(
        [np.stack([dct * (rows_sign if r else 1) * (cols_sign if c else 1) for c in (0, 1)]) for r in (0, 1)]
    )
    assert np.array_equal(pdq.dihedral_dcts_from_flips(flipped), pdq.dihedral_dcts(dct))


@pytest.mark.parametrize("mode", pdq.MODES)
def test_pixel_flips_hash_each_rotation_like_the_rotated_image(mode: str) -> None:
    image = photo("brick", 300)  # a fine texture: the DCT sign trick drifts here, mirrored pixels do not
    variants = pdq.hash_images([jpeg(image)], mode, dihedral=True, pixel_flips=True)
    assert variants.dihedral is not None and variants.pixel_flips
    transposes = [None, *[getattr(Image.Transpose, t) for t in ("ROTATE_90", "ROTATE_180", "ROTATE_270")]]
    transposes += [Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.TRANSPOSE]
    transposes += [Image.Transpose.TRANSVERSE]
    decoded = Image.open(io.BytesIO(jpeg(image))).convert("RGB")
    for v, transpose in enumerate(transposes):
        turned = decoded if transpose is None else decoded.transpose(transpose)
        direct = pdq.hash_images([jpeg(turned, 100)], mode).hashes[0]
        assert int(pdq.popcount_distance(variants.dihedral[0, v], direct)) <= 6, pdq.DIHEDRAL_NAMES[v]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 200), size=st.integers(1, 600), seed=st.integers(0, 2**32 - 1))
def test_linear_resize_matrix_is_pillows_bilinear_enlargement(n: int, size: int, seed: int) -> None:
    if size < n:
        size = n  # Pillow's bilinear widens its filter when shrinking; the matrix is for enlarging only
    row = np.random.default_rng(seed).uniform(0, 255, (1, n)).astype(np.float32)
    enlarged = np.asarray(Image.fromarray(row, "F").resize((size, 1), Image.BILINEAR))
    np.testing.assert_allclose(pdq.linear_resize_matrix(n, size) @ row[0], enlarged[0], atol=2e-3)


def _hash_of_picture_resized_to_512(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as image:
        square = image.convert("RGB").resize((512, 512), Image.BILINEAR)
    buffer = io.BytesIO()
    square.save(buffer, "PNG")
    return pdq.hash_images([buffer.getvalue()], "exact").hashes[0]


@pytest.mark.parametrize("mode", pdq.MODES)
def test_upscaled_variant_is_the_picture_hashed_on_the_512_canvas(mode: str) -> None:
    for name, side in (("brick", 120), ("rocket", 240), ("retina", 360), ("bridge", 500)):
        blob = jpeg(photo(name, side), 85)
        result = pdq.hash_images([blob], mode, reframes=(UPSCALED,))
        assert result.reframed is not None and result.reframed_valid is not None and result.reframed_valid[0, 0]
        # Measured 0-4 bits: Pillow rounds the enlarged pixels to 8 bits, the variant keeps them exact.
        assert pdq.popcount_distance(result.reframed[0, 0], _hash_of_picture_resized_to_512(blob)) <= 8


def test_upscaled_variant_brings_downscaled_textures_back_within_the_radius() -> None:
    for name, factor in (("brick", 0.5), ("brick", 0.75), ("grass", 0.25)):
        original = photo(name)
        bank = pdq.hash_images([jpeg(original)], "exact").hashes[0]
        small = original.resize((round(original.width * factor), round(original.height * factor)), Image.LANCZOS)
        query = pdq.hash_images([jpeg(small, 85)], "fast", reframes=(UPSCALED,))
        assert query.reframed is not None
        # Measured: plain 38-52 bits, upscaled 20-24 (the 480-px original was blurred over 4 pixels, the copy not).
        assert pdq.popcount_distance(query.hashes[0], bank) > 31
        assert pdq.popcount_distance(query.reframed[0, 0], bank) <= 31


def test_the_canvas_applies_only_to_pictures_it_would_enlarge() -> None:
    sizes = [(600, 400), (512, 512), (300, 512), (512, 200), (64, 48)]
    blobs = [jpeg(photo("coffee", 640).resize(size)) for size in sizes]
    result = pdq.hash_images(blobs, "fast", reframes=(UPSCALED,))
    assert result.reframed_valid is not None and result.reframed is not None
    assert result.reframed_valid[:, 0].tolist() == [False, False, True, True, True]
    assert not result.reframed[0].any() and not result.reframed[1].any()


def test_a_canvas_does_not_combine_with_grown_sides() -> None:
    with pytest.raises(ValueError, match="do not combine"):
        pdq.Reframe("both", top=0.1, canvas=512)


@pytest.mark.parametrize("pixel_flips", [True, False])
def test_canvas_flips_are_the_flipped_copy_on_the_canvas(pixel_flips: bool) -> None:
    small = photo("brick", 240)
    mirrored = jpeg(ImageOps.mirror(small), 95)
    plain = pdq.hash_images([jpeg(small, 95)], "fast", reframes=(UPSCALED,))
    flipped = pdq.hash_images([mirrored], "fast", dihedral=True, pixel_flips=pixel_flips, reframes=(UPSCALED_FLIPS,))
    assert flipped.reframed_dihedral is not None and plain.reframed is not None
    assert np.array_equal(flipped.reframed_dihedral[0, 0, 0], flipped.reframed[0, 0])
    undone = flipped.reframed_dihedral[0, 0, pdq.DIHEDRAL_NAMES.index("flipy")]  # flipy undoes a left-right mirror
    distance = int(pdq.popcount_distance(undone, plain.reframed[0, 0]))
    # From mirrored pixels the flip is the same picture up to JPEG noise (measured 2 bits); the DCT's signs drift
    # on this texture (72 bits), as they do without the canvas.
    assert distance <= 8 if pixel_flips else distance > 8


def test_frames_without_flips_get_no_rotations() -> None:
    result = pdq.hash_images([jpeg(photo("rocket", 240))], "fast", dihedral=True, reframes=(UPSCALED, UPSCALED_FLIPS))
    assert result.reframed_dihedral is not None and result.reframed is not None
    assert not result.reframed_dihedral[0, 0].any() and result.reframed_dihedral[0, 1].any()
    assert np.array_equal(result.reframed[0, 0], result.reframed[0, 1])
