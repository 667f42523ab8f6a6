"""The depth VQ-VAE of SPEC §2: 320×320 one-channel depth map ↔ 10×10 grid of codes from a 128-entry
codebook, in the checkpoint layout of MolmoAct's `vae-final.pt` (so that its weights load as is).

Also holds the exact, batched SPEC §2 preprocessing (8-bit map → PIL-bilinear 320×320 → [0, 1]) and
checkpoint loading/saving. Training (EMA codebook updates, dead-code restarts) lives here too, since
it is the same module; the training loop is `armdata.commands.train_vqvae`.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from armdata.models.hub import VQVAE_FILE, VQVAE_REPO
from armdata.torch_files import load_weights_only

log = logging.getLogger(__name__)

IMAGE_SIZE = 320
GRID = 10                      # 320 / downsample 32
NUM_CODES = 128
CODE_DIM = 512

# PIL's fixed-point resampling: coefficients carry 22 fractional bits for 8-bit images.
_PIL_PRECISION_BITS = 32 - 8 - 2


class ResidualBlock(nn.Module):
    """x + conv3→ReLU→conv3→ReLU→conv1 (keys net.0, net.2, net.4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class EMACodebook(nn.Module):
    """Codebook trained by exponential moving averages (no gradient), as buffers `_embedding`,
    `_ema_cluster_size`, `_ema_w`."""

    def __init__(self, num_codes: int = NUM_CODES, dim: int = CODE_DIM, decay: float = 0.99,
                 epsilon: float = 1e-5) -> None:
        super().__init__()
        self.decay = decay
        self.epsilon = epsilon
        embedding = torch.randn(num_codes, dim) / math.sqrt(dim)
        self.register_buffer("_embedding", embedding)
        self.register_buffer("_ema_cluster_size", torch.zeros(num_codes))
        self.register_buffer("_ema_w", embedding.clone())

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2) for each row of `flat` (N, dim).

        In float64: latents can sit ~1e-4 (squared) from their codes while |z|² ~ 1, and the
        float32 expansion |z|² - 2z·e + |e|² then loses the ordering to rounding that varies with
        batch size and thread count. Float64 gives the same codes for any batching."""
        z = flat.to(torch.float64)
        emb = self._embedding.to(torch.float64)
        distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ emb.t() + emb.pow(2).sum(1)
        return distances.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self._embedding[codes]

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step towards the mean of the vectors assigned to each code (Laplace-smoothed
        counts so that unused codes do not divide by zero)."""
        onehot = F.one_hot(codes, self._embedding.shape[0]).to(flat.dtype)
        self._ema_cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self._ema_w.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self._ema_cluster_size.sum()
        size = (self._ema_cluster_size + self.epsilon) / (n + len(self._ema_cluster_size)
                                                          * self.epsilon) * n
        self._embedding.copy_(self._ema_w / size.unsqueeze(1))

    @torch.no_grad()
    def restart(self, dead: torch.Tensor, samples: torch.Tensor) -> int:
        """Re-seed the codes flagged in `dead` (bool, num_codes) with encoder outputs picked
        k-means++-style (each pick ∝ squared distance to the nearest live or already picked code),
        so that they land where the codebook represents the data worst and get assigned again;
        their EMA statistics start from one assignment. All codes dead = k-means++ seeding.
        Returns the number of codes restarted."""
        idx = dead.nonzero().squeeze(1)
        if len(idx) == 0 or len(samples) == 0:
            return 0
        samples = samples.float()
        live = self._embedding[~dead].float()
        nearest_sq = (torch.cdist(samples, live).pow(2).min(1).values if len(live)
                      else torch.full((len(samples),), math.inf, device=samples.device))
        for i in idx.tolist():
            # Uniform when nothing is covered yet (first pick) or everything already is.
            weights = nearest_sq if torch.isfinite(nearest_sq).all() and nearest_sq.sum() > 0 \
                else torch.ones_like(nearest_sq)
            pick = samples[torch.multinomial(weights, 1)[0]]
            self._embedding[i] = pick
            nearest_sq = torch.minimum(nearest_sq, (samples - pick).pow(2).sum(1))
        self._ema_w[idx] = self._embedding[idx]
        self._ema_cluster_size[idx] = 1.0
        return len(idx)


class VQVAE(nn.Module):
    """SPEC §2 architecture: channels 1, hidden 16, downsample 32, codebook 128×512."""

    def __init__(self, decay: float = 0.99, commitment: float = 0.25) -> None:
        super().__init__()
        self.commitment = commitment
        enc: list[nn.Module] = []
        chans = [1, 16, 32, 64, 128, 256]
        for cin, cout in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.ReLU()]
        enc += [ResidualBlock(256), ResidualBlock(256), nn.Conv2d(256, CODE_DIM, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(CODE_DIM, 256, 1), nn.ReLU(),
                                ResidualBlock(256), ResidualBlock(256)]
        for cin, cout in zip([256, 256, 128, 64, 32], [256, 128, 64, 32, 16]):
            dec += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.ReLU()]
        dec += [nn.Conv2d(16, 1, 1)]
        self.decoder = nn.Sequential(*dec)
        self._vq_vae = EMACodebook(decay=decay)

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 320, 320) in [0, 1] → (B, 100, 512) encoder vectors, row-major."""
        z = self.encoder(x)
        return z.permute(0, 2, 3, 1).reshape(len(x), -1, z.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 320, 320) in [0, 1] → (B, 100) int64 codes."""
        z = self.latents(x)
        return self._vq_vae.nearest(z.reshape(-1, z.shape[-1])).view(len(x), -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, 100) codes → (B, 1, 320, 320) maps in the [0, 1] scale."""
        return self._decode_vectors(self._vq_vae.lookup(codes.long()))

    def _decode_vectors(self, q: torch.Tensor) -> torch.Tensor:
        grid = q.view(len(q), GRID, GRID, -1).permute(0, 3, 1, 2)
        return self.decoder(grid)

    def train_step(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss for one batch (reconstruction MSE + commitment); updates the codebook by EMA.
        Returns the loss and detached batch statistics (recon MSE, codes, latents)."""
        z = self.latents(x).float()    # codebook statistics stay fp32 under autocast
        flat = z.reshape(-1, z.shape[-1])
        codes = self._vq_vae.nearest(flat.detach())
        q = self._vq_vae.lookup(codes).view_as(z)
        self._vq_vae.ema_update(flat.detach(), codes)
        commit = F.mse_loss(z, q.detach())
        q_st = z + (q - z).detach()        # straight-through gradient to the encoder
        recon = self._decode_vectors(q_st)
        recon_mse = F.mse_loss(recon.float(), x)
        loss = recon_mse + self.commitment * commit
        return loss, {"recon_mse": recon_mse.detach(), "codes": codes, "latents": flat.detach()}


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys saved from a data-parallel wrapper carry `module.`; the model's do not."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def resolve_checkpoint(path: str | None) -> Path:
    """A local checkpoint path, or (None/empty) MolmoAct's `vae-final.pt` from the Hub."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"VQ-VAE checkpoint {p} does not exist")
        return p
    from huggingface_hub import hf_hub_download
    try:
        return Path(hf_hub_download(VQVAE_REPO, VQVAE_FILE))
    except Exception as exc:
        raise RuntimeError(
            f"cannot download the VQ-VAE checkpoint {VQVAE_FILE} from the Hub repo {VQVAE_REPO} "
            f"({type(exc).__name__}: {exc}); without network access pass a local checkpoint "
            f"with --vqvae PATH") from exc


def load_vqvae(path: str | None, device: str | torch.device = "cpu") -> VQVAE:
    """Load a `{"weights": state_dict}` checkpoint (keys with or without `module.`), eval mode."""
    ckpt_path = resolve_checkpoint(path)
    ckpt = load_weights_only(ckpt_path, "VQ-VAE checkpoint",
                             refused_hint="; save only tensors in a {'weights': state_dict} dict")
    if not isinstance(ckpt, dict) or "weights" not in ckpt:
        raise ValueError(f"{ckpt_path}: expected a dict with a 'weights' state dict")
    model = VQVAE()
    missing, unexpected = model.load_state_dict(strip_module_prefix(ckpt["weights"]), strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt_path}: not a SPEC §2 VQ-VAE checkpoint (missing keys {missing}, "
                         f"unexpected keys {unexpected})")
    if torch.device(device).type == "cuda":
        # Code assignment is an argmin over distances that can be 1e-4 apart: TF32 convolutions
        # would flip codes relative to the fp32 reference.
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    return model.to(device).eval()


def save_vqvae(model: VQVAE, path: str | Path, **extra: object) -> None:
    """Save in the layout `load_vqvae` (and MolmoAct) reads, plus `extra` entries (training
    state), atomically so that an interrupted save never leaves a truncated checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"weights": model.state_dict(), **extra}, tmp)
    os.replace(tmp, path)


def pil_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) integer weights of PIL's 8-bit BILINEAR resize along one axis
    (triangle filter widened by the downscale factor, normalized, rounded to 22-bit fixed point)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale
    weights = np.zeros((out_size, in_size), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = np.arange(xmin, xmax)
        w = np.clip(1.0 - np.abs((x - center + 0.5) / filterscale), 0.0, None)
        total = sum(w.tolist())      # sequential, in PIL's order
        if total != 0.0:
            w = w / total
        weights[xx, xmin:xmax] = np.trunc(w * (1 << _PIL_PRECISION_BITS) + 0.5)
    return weights


def _resample_axis(x: torch.Tensor, weights: np.ndarray, dim: int) -> torch.Tensor:
    """One PIL pass: integer weighted sum, round half up, clip to 0..255. float64 holds the
    integer sums exactly (< 2^31), so this is bit-exact on any device."""
    w = torch.from_numpy(weights).to(device=x.device, dtype=torch.float64)
    out = torch.matmul(x, w.t()) if dim == -1 else torch.matmul(w, x)
    half = float(1 << (_PIL_PRECISION_BITS - 1))
    return torch.floor((out + half) / (1 << _PIL_PRECISION_BITS)).clamp_(0, 255)


def resize_u8_like_pil(maps: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(B, H, W) uint8 → (B, size, size) uint8, identical to PIL `Image.resize((size, size),
    BILINEAR)` per map as Pillow <= 12 (MolmoAct's reference) does it: horizontal pass first,
    8-bit intermediate. Checked for every shape up to 20:1; for slivers beyond ~100:1 Pillow 12
    evidently takes the vertical pass first and the result can differ by 1 on some pixels, as it
    can for maps taller and narrower than `size` with Pillow 13, which then starts with the
    vertical pass (landscape camera frames are unaffected)."""
    x = maps.to(torch.float64)
    h, w = x.shape[-2:]
    if w != size:
        x = _resample_axis(x, pil_bilinear_weights(w, size), dim=-1)
    if h != size:
        x = _resample_axis(x, pil_bilinear_weights(h, size), dim=-2)
    return x.to(torch.uint8)


def vqvae_input(maps: torch.Tensor) -> torch.Tensor:
    """SPEC §2 steps 3: (B, H, W) uint8 depth maps → (B, 1, 320, 320) float32 in [0, 1]."""
    return (resize_u8_like_pil(maps).to(torch.float32) / 255.0).unsqueeze(1)


def decoded_to_u8(recon: torch.Tensor) -> torch.Tensor:
    """(B, 1, 320, 320) decoded maps → (B, 320, 320) uint8 for viewing."""
    return (recon[:, 0].clamp(0, 1) * 255).round().to(torch.uint8)
