"""PaSST audio tagger (AudioSet, 527 labels) in plain PyTorch, for the KL divergence metric.

AudioCraft computes its KLD with `hear21passt`. That package imports timm (hence torchvision) and
torchaudio at import time, which this library must not require; so the network and its mel front
end are re-implemented here with hear21passt's parameter names (`patch_embed.proj`, `cls_token`,
`dist_token`, `new_pos_embed`, `freq_new_pos_embed`, `time_new_pos_embed`, `blocks.*`, `norm`,
`head.0/1`, `head_dist`): the released PaSST checkpoints load unchanged, and the evaluation-mode
output is the same as `hear21passt.base*.get_basic_model(mode='logits')`.
"""
from dataclasses import dataclass
import math
from pathlib import Path
import typing as tp

import torch
from torch import nn

from ._weights import load_weights
from ..modules.clap.htsat import GeluMlp

SAMPLE_RATE = 32_000
_RELEASES = 'https://github.com/kkoutini/PaSST/releases/download'


@dataclass(frozen=True)
class PasstVariant:
    """A released PaSST: its input length in mel frames and checkpoint URL."""
    input_tdim: int
    url: str


# pretrained_length (seconds) -> released model, as AudioCraft's `metrics.kld.passt.pretrained_length`.
PASST_VARIANTS: tp.Dict[int, PasstVariant] = {
    10: PasstVariant(998, f'{_RELEASES}/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt'),
    20: PasstVariant(2000, f'{_RELEASES}/v0.0.5/passt-s-f128-20sec-p16-s10-ap.474-swa.pt'),
    30: PasstVariant(3000, f'{_RELEASES}/v0.0.5/passt-s-f128-30sec-p16-s10-ap.473-swa.pt'),
}


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> torch.Tensor:
    """Kaldi's triangular mel banks [num_bins, n_fft // 2] (no VTLN warping), as torchaudio's
    `compliance.kaldi.get_mel_banks`, which hear21passt uses."""
    def mel(freq: tp.Union[float, torch.Tensor]) -> tp.Any:
        if isinstance(freq, torch.Tensor):
            return 1127.0 * (1.0 + freq / 700.0).log()
        return 1127.0 * math.log(1.0 + freq / 700.0)

    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    fft_bin_width = sample_rate / n_fft
    mel_low, mel_high = mel(low_freq), mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + bins * delta
    center = mel_low + (bins + 1.0) * delta
    right = mel_low + (bins + 2.0) * delta
    freqs = mel(fft_bin_width * torch.arange(n_fft // 2)).unsqueeze(0)
    up_slope = (freqs - left) / (center - left)
    down_slope = (right - freqs) / (right - center)
    return torch.clamp(torch.min(up_slope, down_slope), min=0.0)


class PasstMel(nn.Module):
    """hear21passt's `AugmentMelSTFT` in evaluation mode (no augmentation): pre-emphasis, 1024-point
    STFT (800-sample symmetric Hann window, hop 320), power, 128 Kaldi mel bands up to 15 kHz,
    `log(x + 1e-5)` and the `(x + 4.5) / 5` normalisation."""

    def __init__(self, n_mels: int = 128, sample_rate: int = SAMPLE_RATE, win_length: int = 800,
                 hop_length: int = 320, n_fft: int = 1024, fmin: float = 0.0, fmax_aug_range: int = 2000) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        fmax = sample_rate // 2 - fmax_aug_range // 2
        self.register_buffer('window', torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer('preemphasis', torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        banks = kaldi_mel_banks(n_mels, n_fft, sample_rate, fmin, fmax)
        self.register_buffer('mel_basis', nn.functional.pad(banks, (0, 1)), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, T] waveform at 32 kHz -> [B, n_mels, frames]."""
        x = nn.functional.conv1d(wav.unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.win_length, center=True,
                          normalized=False, window=self.window, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(dim=-1)
        melspec = (torch.matmul(self.mel_basis, power) + 1e-5).log()
        return (melspec + 4.5) / 5.0


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = GeluMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class PaSST(nn.Module):
    """The distilled PaSST transformer (evaluation only: no patchout) over [B, 1, n_mels, frames].

    Returns `(logits, features)`, as hear21passt's PaSST.
    """

    def __init__(self, input_fdim: int = 128, input_tdim: int = 998, patch_size: int = 16, stride: int = 10,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 num_classes: int = 527) -> None:
        super().__init__()
        grid = (input_fdim // stride, input_tdim // stride)  # as hear21passt sizes the position tables
        self.patch_embed = _PatchEmbed(1, embed_dim, patch_size, stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, embed_dim))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid[0], 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, 1, grid[1]))
        self.blocks = nn.Sequential(*[_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, num_classes))
        self.head_dist = nn.Linear(embed_dim, num_classes)
        for param in (self.cls_token, self.dist_token, self.new_pos_embed, self.freq_new_pos_embed,
                      self.time_new_pos_embed):
            nn.init.trunc_normal_(param, std=0.02)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed(x)  # [B, E, F, T]
        time_frames = x.shape[-1]
        if time_frames > self.time_new_pos_embed.shape[-1]:
            raise ValueError(f"PaSST got {time_frames} time patches but was trained for at most "
                             f"{self.time_new_pos_embed.shape[-1]}: split the audio into shorter segments.")
        x = x + self.time_new_pos_embed[..., :time_frames] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)
        batch = x.shape[0]
        cls_token = self.cls_token.expand(batch, -1, -1) + self.new_pos_embed[:, :1]
        dist_token = self.dist_token.expand(batch, -1, -1) + self.new_pos_embed[:, 1:]
        x = self.norm(self.blocks(torch.cat([cls_token, dist_token, x], dim=1)))
        features = (x[:, 0] + x[:, 1]) / 2
        return self.head(features), features


class PasstTagger(nn.Module):
    """Mel front end + PaSST: [B, T] 32 kHz audio -> [B, 527] AudioSet logits (`mel`, `net` as in
    hear21passt's wrapper)."""

    def __init__(self, input_tdim: int = 998, **net_kwargs: tp.Any) -> None:
        super().__init__()
        self.mel = PasstMel()
        self.net = PaSST(input_tdim=input_tdim, **net_kwargs)
        self.sample_rate = SAMPLE_RATE

    @property
    def min_samples(self) -> int:
        """Shortest input that yields one patch in time (16 mel frames)."""
        patch = self.net.patch_embed.proj.kernel_size[1]
        return (patch - 1) * self.mel.hop_length + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        logits, _ = self.net(self.mel(wav).unsqueeze(1))
        return logits


def load_passt(pretrained_length: int = 20, model_path: tp.Union[str, Path, None] = None) -> PasstTagger:
    """The released PaSST for `pretrained_length` seconds (10, 20 or 30), from `model_path` (local
    path, `//reference/...` or URL; default: the release URL)."""
    if pretrained_length not in PASST_VARIANTS:
        raise ValueError(f"No released PaSST for pretrained_length={pretrained_length}: "
                         f"use one of {sorted(PASST_VARIANTS)}.")
    variant = PASST_VARIANTS[pretrained_length]
    model = PasstTagger(input_tdim=variant.input_tdim)
    state = load_weights(model_path or variant.url, 'PaSST')
    if 'model' in state and isinstance(state['model'], dict):
        state = state['model']
    model.net.load_state_dict(state)
    return model.eval()
