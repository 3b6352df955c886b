"""VGGish audio embeddings in PyTorch, as the FAD of AudioCraft (TensorFlow VGGish) defines them.

Input features follow the released VGGish recipe: 16 kHz mono, 25 ms periodic-Hann STFT windows with
a 10 ms hop (FFT size 512), a 64-band HTK mel matrix between 125 and 7500 Hz, `log(mel + 0.01)`, and
non-overlapping 0.96 s patches of 96 frames. The network and PCA post-processing use the module layout
of the widely used PyTorch port (torchvggish: `features.*`, `embeddings.*`, and a PCA file with
`pca_eigen_vectors` and `pca_means`), so its released weights load unchanged.
"""
import math
from pathlib import Path
import typing as tp

import torch
from torch import nn

from ._weights import load_weights

SAMPLE_RATE = 16_000
STFT_WINDOW = 400  # 25 ms at 16 kHz
STFT_HOP = 160  # 10 ms
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
PATCH_FRAMES = 96  # 0.96 s of 10 ms frames, and the hop between patches
EMBEDDING_SIZE = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0

VGGISH_URL = 'https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth'
PCA_URL = 'https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth'


def _hertz_to_mel(hertz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(hertz / 700.0)


def vggish_mel_matrix(num_spectrogram_bins: int = 257, sample_rate: int = SAMPLE_RATE,
                      num_mel_bins: int = NUM_MEL_BINS, lower_hz: float = MEL_MIN_HZ,
                      upper_hz: float = MEL_MAX_HZ) -> torch.Tensor:
    """VGGish's [num_spectrogram_bins, num_mel_bins] matrix (float64).

    Triangles are built in the mel domain over the linear FFT bin frequencies, and the DC bin is
    zeroed, exactly as VGGish's `spectrogram_to_mel_matrix` (which differs from librosa's banks).
    """
    bins_mel = _hertz_to_mel(torch.linspace(0.0, sample_rate / 2, num_spectrogram_bins, dtype=torch.float64))
    edges = torch.linspace(_hertz_to_mel(torch.tensor(lower_hz, dtype=torch.float64)).item(),
                           _hertz_to_mel(torch.tensor(upper_hz, dtype=torch.float64)).item(),
                           num_mel_bins + 2, dtype=torch.float64)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (center - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - center)
    weights = torch.clamp(torch.minimum(lower_slope, upper_slope), min=0.0)
    weights[0, :] = 0.0
    return weights


def vggish_log_mel(wav: torch.Tensor) -> torch.Tensor:
    """Log-mel frames [num_frames, 64] of a 1-D 16 kHz waveform (only complete 25 ms windows)."""
    if wav.dim() != 1:
        raise ValueError(f"vggish_log_mel expects a 1-D waveform, got shape {tuple(wav.shape)}.")
    if wav.numel() < STFT_WINDOW:
        return wav.new_zeros(0, NUM_MEL_BINS)
    fft_size = 2 ** math.ceil(math.log2(STFT_WINDOW))
    frames = wav.unfold(0, STFT_WINDOW, STFT_HOP)  # no padding: VGGish drops incomplete frames
    window = torch.hann_window(STFT_WINDOW, periodic=True, dtype=wav.dtype, device=wav.device)
    magnitude = torch.fft.rfft(frames * window, n=fft_size).abs()
    mel = vggish_mel_matrix(magnitude.shape[-1]).to(magnitude)
    return torch.log(magnitude @ mel + LOG_OFFSET)


def vggish_examples(wav: torch.Tensor) -> torch.Tensor:
    """VGGish input patches [N, 1, 96, 64] of a 1-D 16 kHz waveform (N may be 0 for < 0.96 s)."""
    log_mel = vggish_log_mel(wav)
    if log_mel.shape[0] < PATCH_FRAMES:
        return log_mel.new_zeros(0, 1, PATCH_FRAMES, NUM_MEL_BINS)
    patches = log_mel.unfold(0, PATCH_FRAMES, PATCH_FRAMES)  # [N, 64, 96]
    return patches.transpose(1, 2).unsqueeze(1).contiguous()


def _make_features() -> nn.Sequential:
    layers: tp.List[nn.Module] = []
    in_channels = 1
    for spec in [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M']:
        if spec == 'M':
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(spec, int)
            layers += [nn.Conv2d(in_channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = spec
    return nn.Sequential(*layers)


class VGGishPostprocessor(nn.Module):
    """VGGish PCA whitening, clipping to [-2, 2] and 8-bit quantisation (values 0..255 as floats)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('pca_eigen_vectors', torch.eye(EMBEDDING_SIZE))
        self.register_buffer('pca_means', torch.zeros(EMBEDDING_SIZE, 1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        pca = (self.pca_eigen_vectors @ (embeddings.t() - self.pca_means)).t()
        clipped = pca.clamp(QUANTIZE_MIN, QUANTIZE_MAX)
        return torch.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))


class VGGish(nn.Module):
    """The VGGish network (torchvggish parameter names) with optional PCA post-processing.

    Args:
        postprocess: apply the released PCA + quantisation (needs the PCA parameters loaded).
    """

    def __init__(self, postprocess: bool = True) -> None:
        super().__init__()
        self.features = _make_features()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True),
            nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Linear(4096, EMBEDDING_SIZE), nn.ReLU(True))
        self.pproc: tp.Optional[VGGishPostprocessor] = VGGishPostprocessor() if postprocess else None

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """Embeddings [N, 128] of log-mel patches [N, 1, 96, 64]."""
        x = self.features(examples)
        # TensorFlow flattens channels-last: [N, C, H, W] -> [N, H, W, C] keeps the released weights valid.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        x = self.embeddings(x)
        if self.pproc is not None:
            x = self.pproc(x)
        return x

    def embed_waveform(self, wav: torch.Tensor) -> torch.Tensor:
        """Embeddings [N, 128] of the 0.96 s patches of a 1-D 16 kHz waveform."""
        examples = vggish_examples(wav.float())
        if examples.shape[0] == 0:
            return examples.new_zeros(0, EMBEDDING_SIZE)
        return self(examples)

    def load_pca_params(self, params: tp.Mapping[str, tp.Any]) -> None:
        """Load a torchvggish PCA file content (`pca_eigen_vectors` [128, 128], `pca_means` [128])."""
        if self.pproc is None:
            raise RuntimeError("This VGGish was built with postprocess=False: it has no PCA parameters.")
        missing = {'pca_eigen_vectors', 'pca_means'} - set(params)
        if missing:
            raise KeyError(f"VGGish PCA parameters lack {sorted(missing)}: expected the torchvggish "
                           f"vggish_pca_params file.")
        vectors = torch.as_tensor(params['pca_eigen_vectors'], dtype=torch.float32)
        means = torch.as_tensor(params['pca_means'], dtype=torch.float32).reshape(-1, 1)
        self.pproc.pca_eigen_vectors.copy_(vectors)
        self.pproc.pca_means.copy_(means)


def load_vggish(model_path: tp.Union[str, Path, None] = VGGISH_URL,
                pca_params_path: tp.Union[str, Path, None] = PCA_URL,
                postprocess: bool = True) -> VGGish:
    """VGGish with the torchvggish weights from a path or URL (and its PCA file when `postprocess`)."""
    model = VGGish(postprocess=postprocess)
    if model_path is None:
        raise ValueError("VGGish needs model_path: the torchvggish weights (vggish-10086976.pth), path or URL.")
    state = load_weights(model_path, 'VGGish')
    # torchvggish keeps the PCA parameters in their own file: only the network comes from this one.
    network = {k: v for k, v in state.items() if not k.startswith('pproc.')}
    missing, unexpected = model.load_state_dict(network, strict=False)
    missing = [k for k in missing if not k.startswith('pproc.')]
    if missing or unexpected:
        raise RuntimeError(f"{model_path} is not a torchvggish VGGish state dict: missing {missing}, "
                           f"unexpected {unexpected}.")
    if postprocess:
        if pca_params_path is None:
            raise ValueError("VGGish post-processing needs pca_params_path (vggish_pca_params-970ea276.pth); "
                             "set postprocess=false to use the raw embeddings.")
        model.load_pca_params(load_weights(pca_params_path, 'VGGish PCA'))
    return model.eval()
