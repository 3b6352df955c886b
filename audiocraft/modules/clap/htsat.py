"""HTS-AT audio encoder of LAION-CLAP (no feature fusion), in plain PyTorch.

Parameter and buffer names are laion_clap's (`spectrogram_extractor.stft.conv_real`,
`logmel_extractor.melW`, `bn0`, `patch_embed`, `layers.*.blocks.*`, `norm`, `tscam_conv`, `head`),
so the `audio_branch.*` entries of released CLAP checkpoints load unchanged. The front end is the
torchlibrosa one laion_clap uses: a DFT-by-convolution power spectrogram, librosa's Slaney mel
filters, then 10*log10. Only evaluation is implemented: no SpecAugment, mixup or drop path.
"""
from dataclasses import dataclass
import math
import typing as tp

import torch
from torch import nn


@dataclass(frozen=True)
class HTSATConfig:
    """Front end and Swin sizes of an HTS-AT encoder (defaults: laion_clap's `HTSAT-base`)."""
    sample_rate: int = 48_000
    clip_samples: int = 480_000  # 10 s: what `get_audio_embedding_from_data` crops or pads to
    window_size: int = 1024  # STFT size and window length
    hop_size: int = 480
    mel_bins: int = 64
    fmin: float = 50.
    fmax: float = 14_000.
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: int = 4
    embed_dim: int = 128
    depths: tp.Tuple[int, ...] = (2, 2, 12, 2)
    num_heads: tp.Tuple[int, ...] = (4, 8, 16, 32)
    swin_window: int = 8
    mlp_ratio: float = 4.
    num_classes: int = 527

    @property
    def num_features(self) -> int:
        """Size of the audio embedding before projection."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """librosa's `filters.mel` with its defaults (Slaney mel scale, Slaney area normalisation):
    [n_mels, n_fft // 2 + 1], computed in float64 as librosa does."""
    def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
        # Linear below 1 kHz, logarithmic above (Slaney's Auditory Toolbox).
        linear = freq / (200. / 3)
        log = 15. + torch.log(freq.clamp(min=1000.) / 1000.) / (math.log(6.4) / 27.)
        return torch.where(freq >= 1000., log, linear)

    def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
        linear = mel * (200. / 3)
        log = 1000. * torch.exp((math.log(6.4) / 27.) * (mel - 15.))
        return torch.where(mel >= 15., log, linear)

    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.tensor([fmin, fmax], dtype=torch.float64)
    low, high = hz_to_mel(mel_edges)
    mel_freqs = mel_to_hz(torch.linspace(float(low), float(high), n_mels + 2, dtype=torch.float64))
    fdiff = mel_freqs[1:] - mel_freqs[:-1]
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.)
    enorm = 2.0 / (mel_freqs[2:n_mels + 2] - mel_freqs[:n_mels])
    return weights * enorm[:, None]


class _STFT(nn.Module):
    """torchlibrosa's STFT: the Hann-windowed DFT as two frozen convolutions (`conv_real`, `conv_imag`)."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        phase = 2 * math.pi * torch.outer(torch.arange(bins, dtype=torch.float64),
                                          torch.arange(n_fft, dtype=torch.float64)) / n_fft
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(phase) * window)[:, None].float())
            self.conv_imag.weight.copy_((-torch.sin(phase) * window)[:, None].float())
        for param in self.parameters():
            param.requires_grad_(False)

    def forward(self, wav: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        x = nn.functional.pad(wav[:, None], (self.n_fft // 2, self.n_fft // 2), mode='reflect')
        return self.conv_real(x), self.conv_imag(x)


class _Spectrogram(nn.Module):
    """torchlibrosa's `Spectrogram` (power 2)."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.stft = _STFT(n_fft, hop_length)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, T] -> power spectrogram [B, 1, frames, bins]."""
        real, imag = self.stft(wav)
        return (real ** 2 + imag ** 2)[:, None].transpose(2, 3)


class _LogmelFilterBank(nn.Module):
    """torchlibrosa's `LogmelFilterBank`: mel projection (`melW`, frozen) then power to dB."""

    def __init__(self, cfg: HTSATConfig) -> None:
        super().__init__()
        mel = slaney_mel_filters(cfg.sample_rate, cfg.window_size, cfg.mel_bins, cfg.fmin, cfg.fmax)
        self.melW = nn.Parameter(mel.T.float(), requires_grad=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # ref=1, amin=1e-10, no top_db, as laion_clap configures it.
        return 10.0 * torch.log10(torch.clamp(spec @ self.melW, min=1e-10))


class _PatchEmbed(nn.Module):
    """Non-overlapping patches of the spectrogram image -> normed tokens [B, N, embed_dim]."""

    def __init__(self, cfg: HTSATConfig) -> None:
        super().__init__()
        padding = (cfg.patch_size - cfg.patch_stride) // 2
        self.proj = nn.Conv2d(1, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_stride, padding=padding)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class GeluMlp(nn.Module):
    """The vision-transformer feed-forward (`fc1`, GELU, `fc2`), shared by HTSAT and PaSST."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * nW, window * window, C], windows of each item contiguous."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def _merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `_partition`: [B * nW, window * window, C] -> [B, H, W, C]."""
    channels = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


class _WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with Swin's learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        # Persistent, as in laion_clap: checkpoints hold it.
        self.register_buffer('relative_position_index', relative[..., 0] * (2 * window - 1) + relative[..., 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        windows, length, dim = x.shape
        qkv = self.qkv(x).reshape(windows, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] * self.scale) @ qkv[1].transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(length, length, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            n_win = mask.shape[0]
            attn = attn.view(windows // n_win, n_win, self.num_heads, length, length) + mask[None, :, None]
            attn = attn.view(windows, self.num_heads, length, length)
        out = attn.softmax(dim=-1) @ qkv[2]
        return self.proj(out.transpose(1, 2).reshape(windows, length, dim))


class _SwinBlock(nn.Module):
    """Swin block: window attention (cyclically shifted on odd blocks) and feed-forward, pre-norm."""

    def __init__(self, dim: int, resolution: tp.Tuple[int, int], num_heads: int, window: int, shift: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # the window covers the whole map: no partition, no shift
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = GeluMlp(dim, int(dim * mlp_ratio))
        mask = None
        if shift > 0:
            # Label the regions the cyclic shift brings together; tokens of different regions must not attend.
            height, width = resolution
            regions = torch.zeros(1, height, width, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for label, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
                regions[:, rows, cols, :] = label
            labels = _partition(regions, window).squeeze(-1)
            mask = (labels[:, None, :] - labels[:, :, None]) != 0
            mask = torch.zeros(mask.shape).masked_fill(mask, -100.0)
        self.register_buffer('attn_mask', mask)  # persistent when present, as in checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.resolution
        batch, _, channels = x.shape
        shortcut = x
        x = self.norm1(x).view(batch, height, width, channels)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        x = _merge(self.attn(_partition(x, self.window), self.attn_mask), self.window, height, width)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.reshape(batch, height * width, channels)
        return x + self.mlp(self.norm2(x))


class _PatchMerging(nn.Module):
    """Halves the token grid, doubling the channels."""

    def __init__(self, resolution: tp.Tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.resolution
        x = x.view(x.shape[0], height, width, -1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class _BasicLayer(nn.Module):
    """One Swin stage: its blocks, then patch merging (except the last stage)."""

    def __init__(self, cfg: HTSATConfig, index: int, resolution: tp.Tuple[int, int]) -> None:
        super().__init__()
        dim = cfg.embed_dim * 2 ** index
        self.blocks = nn.ModuleList([
            _SwinBlock(dim, resolution, cfg.num_heads[index], cfg.swin_window,
                       0 if i % 2 == 0 else cfg.swin_window // 2, cfg.mlp_ratio)
            for i in range(cfg.depths[index])])
        last = index == len(cfg.depths) - 1
        self.downsample = None if last else _PatchMerging(resolution, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class HTSAT(nn.Module):
    """HTS-AT (laion_clap's `HTSAT_Swin_Transformer`, no fusion): [B, T] waveform -> [B, num_features]
    clip embedding (laion_clap's `output_dict['embedding']`)."""

    def __init__(self, cfg: HTSATConfig = HTSATConfig()) -> None:
        super().__init__()
        if cfg.spec_size % cfg.mel_bins:
            raise ValueError(f"HTSAT: spec_size ({cfg.spec_size}) must be a multiple of mel_bins ({cfg.mel_bins}).")
        self.cfg = cfg
        self.freq_ratio = cfg.spec_size // cfg.mel_bins
        self.spectrogram_extractor = _Spectrogram(cfg.window_size, cfg.hop_size)
        self.logmel_extractor = _LogmelFilterBank(cfg)
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        self.patch_embed = _PatchEmbed(cfg)
        grid = cfg.spec_size // cfg.patch_stride
        self.layers = nn.ModuleList([_BasicLayer(cfg, i, (grid // 2 ** i, grid // 2 ** i))
                                     for i in range(len(cfg.depths))])
        self.norm = nn.LayerNorm(cfg.num_features)
        # The tagging head is not used for embeddings, but checkpoints hold it.
        freq_kernel = cfg.spec_size // 2 ** (len(cfg.depths) - 1) // cfg.patch_stride // self.freq_ratio
        if freq_kernel < 1:
            raise ValueError("HTSAT: spec_size too small for this many layers; raise spec_size or use fewer depths.")
        self.tscam_conv = nn.Conv2d(cfg.num_features, cfg.num_classes, kernel_size=(freq_kernel, 3), padding=(0, 1))
        self.head = nn.Linear(cfg.num_classes, cfg.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, T] -> batch-normalised log-mel [B, 1, frames, mel_bins]."""
        x = self.logmel_extractor(self.spectrogram_extractor(wav))
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def _to_image(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, frames, mel] -> the square [B, 1, spec_size, spec_size] image, folding time into
        `freq_ratio` stacked bands (frames first stretched bicubically to spec_size * freq_ratio)."""
        target_t, target_f = self.cfg.spec_size * self.freq_ratio, self.cfg.spec_size // self.freq_ratio
        frames, mels = x.shape[-2:]
        if frames > target_t or mels > target_f:
            raise ValueError(f"HTSAT takes at most {target_t} frames of {target_f} mel bins, got {frames}x{mels}: "
                             f"feed at most clip_samples={self.cfg.clip_samples} samples.")
        if frames < target_t:
            x = nn.functional.interpolate(x, (target_t, mels), mode='bicubic', align_corners=True)
        if mels < target_f:
            x = nn.functional.interpolate(x, (x.shape[2], target_f), mode='bicubic', align_corners=True)
        batch, chans, time, freq = x.shape
        x = x.transpose(2, 3).reshape(batch, chans, freq, self.freq_ratio, time // self.freq_ratio)
        return x.transpose(2, 3).reshape(batch, chans, freq * self.freq_ratio, time // self.freq_ratio)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self._to_image(self.log_mel(wav)))
        for layer in self.layers:
            x = layer(x)
        # laion_clap averages the normed tokens after regrouping them by frequency band; the mean over
        # all tokens is the same number.
        return self.norm(x).mean(dim=1)
