"""The depth VQ-VAE: golden codes/decodes against the reference fixture, exact PIL-bilinear
preprocessing, checkpoint loading, batching invariance and the EMA codebook."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
import PIL
from PIL import Image

from armdata.models import vqvae as vq
from armdata.models.vqvae import VQVAE, load_vqvae, resize_u8_like_pil, save_vqvae, vqvae_input

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vqvae_molmoact"


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    if not (FIXTURE / "expected.json").exists():
        pytest.skip("../shared/fixtures/vqvae_molmoact is not present")
    return FIXTURE


@pytest.fixture(scope="module")
def golden(fixture_dir: Path) -> tuple[VQVAE, list[dict], torch.Tensor]:
    cases = json.loads((fixture_dir / "expected.json").read_text())["cases"]
    model = load_vqvae(str(fixture_dir / "vqvae.pt"))
    maps = [np.asarray(Image.open(fixture_dir / c["depth_png"])) for c in cases]
    x = torch.cat([vqvae_input(torch.from_numpy(m.copy())[None]) for m in maps])
    return model, cases, x


def test_golden_decoded_maps(golden, fixture_dir: Path) -> None:
    model, cases, _ = golden
    with torch.inference_mode():
        recon = model.decode(torch.tensor([c["codes"] for c in cases]))
    for c, r in zip(cases, recon):
        expected = np.load(fixture_dir / c["recon_npy"])
        assert r.shape == (1, 320, 320)
        np.testing.assert_allclose(r[0].numpy(), expected, atol=1e-4, rtol=0)


def test_golden_codes(golden) -> None:
    """Our codes are the exact nearest codebook entries of our latents. The fixture's codebook sits
    so close to the latents (distances ~2e-4 against |z|² ~ 1.2) that the reference's float32
    |z|² - 2z·e + |e|² has a resolution of ~1e-3 relative, coarser than its 1e-4 `stable` margin:
    a few of its `stable` choices are rounding. So: every position agrees, or the two codes are
    tied to within float32 rounding of that expansion (and then a wrong encoder could not pass:
    it would disagree far beyond rounding at most positions)."""
    model, cases, x = golden
    with torch.inference_mode():
        z = model.latents(x).double()
    emb = model._vq_vae._embedding.double()
    ours = model._vq_vae.nearest(z.reshape(-1, 512).float()).view(len(cases), -1).numpy()
    expected = np.array([c["codes"] for c in cases])
    stable = np.array([c["stable"] for c in cases])
    same = ours == expected
    assert same.mean() >= 0.98, f"only {same.mean():.1%} of positions agree"
    assert same[stable].mean() >= 0.99
    eps32 = np.finfo(np.float32).eps
    for i, p in zip(*np.nonzero(~same)):
        zi = z[i, p]
        d_ours = ((zi - emb[ours[i, p]]) ** 2).sum().item()
        d_ref = ((zi - emb[expected[i, p]]) ** 2).sum().item()
        scale = (zi ** 2).sum().item() + (emb[expected[i, p]] ** 2).sum().item()
        assert d_ours <= d_ref, "our code must be the nearer one"
        assert d_ref - d_ours <= 4 * eps32 * scale, (
            f"case {i} position {p}: reference code {expected[i, p]} is farther than float32 "
            f"rounding explains ({d_ref - d_ours:.3g} vs {4 * eps32 * scale:.3g})")


def test_golden_text_form(golden) -> None:
    from armdata.schemas.output import depth_text

    _, cases, _ = golden
    for c in cases:
        assert depth_text(np.array(c["codes"], np.uint8)) == c["depth_string"]


@pytest.mark.parametrize("shape", [(240, 320), (256, 256), (480, 640), (224, 224), (64, 64),
                                   (320, 320), (100, 333), (720, 1280), (17, 900)])
def test_resize_is_pil_bilinear(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    expected = np.asarray(Image.fromarray(a).resize((320, 320), Image.BILINEAR))
    got = resize_u8_like_pil(torch.from_numpy(a)[None])[0].numpy()
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 500), w=st.integers(1, 500), seed=st.integers(0, 2**16))
def test_resize_is_pil_bilinear_any_size(h: int, w: int, seed: int) -> None:
    # Camera-like shapes. For slivers (one side > ~100x the other) Pillow 12 gives what a
    # vertical-first pass gives; no depth frame has such a shape, so that is not replicated.
    assume(max(h, w) <= 20 * min(h, w))
    a = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    got = resize_u8_like_pil(torch.from_numpy(a)[None])[0].numpy()
    # PIL's two passes in Pillow <= 12's order, horizontal then vertical (8-bit in between)
    wide = Image.fromarray(a).resize((320, h), Image.BILINEAR)
    np.testing.assert_array_equal(got, np.asarray(wide.resize((320, 320), Image.BILINEAR)))
    if int(PIL.__version__.split(".")[0]) <= 12 or not h > 320 > w:
        # Pillow 13 starts with the vertical pass for maps taller and narrower than 320
        expected = np.asarray(Image.fromarray(a).resize((320, 320), Image.BILINEAR))
        np.testing.assert_array_equal(got, expected)


def test_resize_batched_equals_single() -> None:
    a = np.random.default_rng(0).integers(0, 256, (5, 96, 128), dtype=np.uint8)
    batched = resize_u8_like_pil(torch.from_numpy(a))
    for i in range(5):
        assert torch.equal(batched[i], resize_u8_like_pil(torch.from_numpy(a[i:i + 1]))[0])


def test_input_is_unit_scale() -> None:
    x = vqvae_input(torch.tensor([[[0, 255], [255, 0]]], dtype=torch.uint8))
    assert x.shape == (1, 1, 320, 320) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_layout_matches_spec() -> None:
    shapes = {k: tuple(v.shape) for k, v in VQVAE().state_dict().items()}
    assert shapes["encoder.0.weight"] == (16, 1, 4, 4)
    assert shapes["encoder.8.weight"] == (256, 128, 4, 4)
    assert shapes["encoder.11.net.4.weight"] == (256, 256, 1, 1)
    assert shapes["encoder.12.weight"] == (512, 256, 1, 1)
    assert shapes["_vq_vae._embedding"] == (128, 512)
    assert shapes["_vq_vae._ema_cluster_size"] == (128,)
    assert shapes["_vq_vae._ema_w"] == (128, 512)
    assert shapes["decoder.0.weight"] == (256, 512, 1, 1)
    assert shapes["decoder.4.weight"] == (256, 256, 4, 4)
    assert shapes["decoder.12.weight"] == (32, 16, 4, 4)
    assert shapes["decoder.14.weight"] == (1, 16, 1, 1)


def test_load_with_and_without_module_prefix(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = VQVAE()
    plain = tmp_path / "plain.pt"
    save_vqvae(model, plain)
    prefixed = tmp_path / "prefixed.pt"
    torch.save({"weights": {f"module.{k}": v for k, v in model.state_dict().items()}}, prefixed)
    for path in (plain, prefixed):
        loaded = load_vqvae(str(path))
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k


def test_load_rejects_other_checkpoints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"weights": {"encoder.0.weight": torch.zeros(16, 1, 4, 4)}}, bad)
    with pytest.raises(ValueError, match="missing keys"):
        load_vqvae(str(bad))
    torch.save({"state": {}}, bad)
    with pytest.raises(ValueError, match="'weights'"):
        load_vqvae(str(bad))
    with pytest.raises(FileNotFoundError):
        load_vqvae(str(tmp_path / "absent.pt"))


def test_default_is_hub_with_clear_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls = []

    def offline(repo: str, filename: str) -> str:
        calls.append((repo, filename))
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RuntimeError, match="--vqvae PATH"):
        load_vqvae(None)
    assert calls == [("allenai/MolmoAct-7B-D-0812", "vae-final.pt")]


def test_encode_batch_equals_single_calls(golden) -> None:
    model, _, x = golden
    with torch.inference_mode():
        batched = model.encode(x)
        singles = torch.cat([model.encode(x[i:i + 1]) for i in range(len(x))])
    assert batched.shape == (len(x), 100)
    assert torch.equal(batched, singles)
    assert int(batched.min()) >= 0 and int(batched.max()) < 128


def test_nearest_is_squared_l2_argmin() -> None:
    book = vq.EMACodebook(num_codes=4, dim=2)
    book._embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]))
    z = torch.tensor([[0.9, 0.1], [0.1, 0.2], [4.0, 4.5], [0.2, 0.7]])
    assert book.nearest(z).tolist() == [1, 0, 3, 2]


def test_ema_update_moves_codes_to_assigned_means() -> None:
    book = vq.EMACodebook(num_codes=3, dim=2, decay=0.0, epsilon=0.0)
    flat = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 4.0]])
    book.ema_update(flat, torch.tensor([0, 0, 2]))
    assert torch.allclose(book._embedding[0], torch.tensor([2.0, 1.0]))
    assert torch.allclose(book._embedding[2], torch.tensor([0.0, 4.0]))
    assert book._ema_cluster_size.tolist() == [2.0, 0.0, 1.0]


def test_restart_reseeds_only_dead_codes() -> None:
    book = vq.EMACodebook(num_codes=4, dim=3)
    before = book._embedding.clone()
    samples = torch.full((5, 3), 7.0)
    book.restart(torch.tensor([False, True, False, True]), samples)
    assert torch.equal(book._embedding[[0, 2]], before[[0, 2]])
    assert torch.equal(book._embedding[[1, 3]], torch.full((2, 3), 7.0))
    assert book._ema_cluster_size[[1, 3]].tolist() == [1.0, 1.0]


def test_decoded_to_u8_clamps() -> None:
    recon = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 5)
    assert vq.decoded_to_u8(recon).tolist() == [[[0, 0, 128, 255, 255]]]


def test_a_truncated_checkpoint_message_ends_on_a_sentence(tmp_path):
    """torch.load's own paragraph is shortened to whole sentences, never cut mid-sentence."""
    from armdata.torch_files import MAX_PROBLEM_CHARS, first_sentences

    path = tmp_path / "cut.pt"
    torch.save({"weights": VQVAE().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(Exception) as raw:
        torch.load(path, weights_only=True)
    torch_text = " ".join(str(raw.value).split())
    with pytest.raises(ValueError) as refused:
        load_vqvae(str(path))
    problem = str(refused.value).split("cannot load the VQ-VAE checkpoint: ", 1)[1]
    assert torch_text.startswith(problem) and torch_text[len(problem)] == "."
    assert first_sentences("One. Two three. " + "x" * MAX_PROBLEM_CHARS + ".") == "One. Two three"
