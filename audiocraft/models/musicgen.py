"""MusicGen: text-to-music and melody-guided music generation.

Loads AudioCraft's released checkpoints (facebook/musicgen-*), including the stereo and
melody ones, or a local folder holding `state_dict.bin` and `compression_state_dict.bin`.
"""
from pathlib import Path
import typing as tp
import warnings

import torch

from ..modules.conditioners import ConditioningAttributes, WavCondition
from .builders import get_debug_compression_model, get_debug_lm_model
from .encodec import CompressionModel
from .genmodel import (BaseGenModel, _check_descriptions, _check_model_name, check_autoregressive_lm,
                       compression_source, default_device)
from .lm import LMModel
from .loaders import demo_model_dir, load_compression_model, load_lm_model, looks_like_local_path
from ..utils.errors import InvalidArgumentError
from ..utils.safe_load import UnsafeCheckpointError

MelodyList = tp.List[tp.Optional[torch.Tensor]]
MelodyType = tp.Union[torch.Tensor, MelodyList]

# Short names kept for backward compatibility with early AudioCraft releases.
_HF_MODEL_CHECKPOINTS_MAP = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}


class MusicGen(BaseGenModel):
    """MusicGen: a compression model and an LM generating its tokens from text (and melody).

    Args:
        name: Name of the model.
        compression_model: Compression model.
        lm: Language model.
        max_duration: Longest duration generated in one go (default: the training segment).
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None):
        super().__init__(name, compression_model, lm, max_duration)
        # AudioCraft's defaults, with a stride that stays valid for models trained on short segments.
        self.set_generation_params(duration=15, extend_stride=18 if self.max_duration > 18 else self.max_duration / 2)

    @staticmethod
    def get_pretrained(name: str = 'facebook/musicgen-melody', device: tp.Optional[tp.Union[str, torch.device]] = None
                       ) -> 'MusicGen':
        """Load a pretrained MusicGen.

        Args:
            name: A hub id ('facebook/musicgen-small', -medium, -large, -melody, -melody-large,
                -stereo-*), a short name ('small', 'medium', 'large', 'melody'), a local folder
                or file, 'demo' for the small model shipped with the package (offline, trained
                on procedural music), or 'debug' for a tiny random model (offline, for tests).
                Folders and repos in Hugging Face transformers' format (config.json +
                model.safetensors of a MusicgenForConditionalGeneration or the Melody class) are
                converted in memory (see docs/TRANSFORMERS.md).
            device: Defaults to 'cuda' if available, else 'cpu'.
        """
        if device is None:
            device = default_device()
        _check_model_name(name)
        if name == 'debug':
            compression_model = get_debug_compression_model(device)
            lm = get_debug_lm_model(device)
            return MusicGen(name, compression_model, lm, max_duration=30)
        if name == 'demo':
            # Shipped with the package (see model_cards/DEMO_MODEL_CARD.md): no network needed.
            folder = demo_model_dir()
            return MusicGen(name, load_compression_model(folder, device=device), load_lm_model(folder, device=device))
        if name in _HF_MODEL_CHECKPOINTS_MAP:
            warnings.warn("MusicGen pretrained model relying on deprecated checkpoint mapping. "
                          f"Please use full pre-trained id instead: facebook/musicgen-{name}")
            name = _HF_MODEL_CHECKPOINTS_MAP[name]
        from .hf_interop import hub_transformers_model_type, is_transformers_musicgen, musicgen_from_transformers
        if is_transformers_musicgen(name):  # a transformers-format folder: converted in memory
            return musicgen_from_transformers(name, device=device)
        try:
            lm = load_lm_model(name, device=device)
        except FileNotFoundError:
            # A hub repo without AudioCraft's files may hold a transformers MusicGen.
            if not looks_like_local_path(name) and hub_transformers_model_type(name) is not None:
                return musicgen_from_transformers(name, device=device)
            raise
        check_autoregressive_lm(lm, name, 'MusicGen')
        compression_model = load_compression_model(compression_source(name), device=device)
        if 'self_wav' in lm.condition_provider.conditioners:
            lm.condition_provider.conditioners['self_wav'].match_len_on_eval = True
            lm.condition_provider.conditioners['self_wav']._use_masking = False
        return MusicGen(name, compression_model, lm)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 30.0, cfg_coef: float = 3.0,
                              two_step_cfg: bool = False, extend_stride: float = 18) -> None:
        """Set the generation parameters (checked by `generation_params.validate_generation_params`).

        As in AudioCraft, every call resets the parameters it is not given to the defaults below:
        `set_generation_params(top_k=50)` after `set_generation_params(duration=1)` generates 30 s.
        Pass every parameter you care about in one call. A fresh model generates 15 s
        (`duration=15`); the command line's default is 10 s.

        Args:
            use_sampling: Sample (True) or take the most likely token (False).
            top_k: Sample among the k most likely tokens (0: no limit).
            top_p: Nucleus sampling threshold; when > 0 it replaces top_k.
            temperature: Softmax temperature, >= 0 (0: greedy).
            duration: Duration of the generated audio, in seconds (> 0, finite).
            cfg_coef: Classifier-free guidance coefficient, >= 0 (1: conditional model alone).
            two_step_cfg: Run conditional and unconditional passes separately (see AudioCraft).
            extend_stride: When generating past max_duration, advance by this many seconds per window.
        """
        self._set_sampling_params(use_sampling, top_k, top_p, temperature, duration, cfg_coef,
                                  two_step_cfg, extend_stride)

    def generate_with_chroma(self, descriptions: tp.List[tp.Optional[str]], melody_wavs: MelodyType,
                             melody_sample_rate: int, progress: bool = False, return_tokens: bool = False,
                             stream: bool = False, chunk_seconds: float = 1.0) -> tp.Any:
        """Generate from text descriptions and reference melodies (chroma conditioning).

        Args:
            descriptions: One text per sample (None for no text).
            melody_wavs: Melodies [B, C, T] or [C, T], or a list of [C, T] tensors (None for no melody).
            melody_sample_rate: Sample rate of the melodies.
            stream, chunk_seconds: yield audio chunks while generating (see `generate`).
        """
        from ..data.audio_utils import convert_audio
        if 'self_wav' not in self.lm.condition_provider.conditioners:
            raise RuntimeError("This model doesn't support melody conditioning. Use the `melody` model.")
        descriptions = _check_descriptions(descriptions)
        if not isinstance(melody_sample_rate, int) or melody_sample_rate <= 0:
            raise InvalidArgumentError(f"melody_sample_rate must be a positive integer, got {melody_sample_rate!r}.")
        if isinstance(melody_wavs, torch.Tensor):
            if melody_wavs.dim() == 2:
                melody_wavs = melody_wavs[None]
            if melody_wavs.dim() != 3:
                raise InvalidArgumentError(f"Melody wavs should have a shape [B, C, T], "
                                           f"got {tuple(melody_wavs.shape)}.")
            melody_wavs = list(melody_wavs)
        else:
            for melody in melody_wavs:
                if melody is not None and (not isinstance(melody, torch.Tensor) or melody.dim() != 2):
                    raise InvalidArgumentError("Each melody in the list must be a [C, T] tensor or None.")
        for idx, melody in enumerate(melody_wavs):
            if melody is None:
                continue
            if melody.shape[-1] == 0:
                raise InvalidArgumentError(f"Melody {idx} is empty (0 samples): pass a recording, or None for no "
                                           "melody for that sample.")
            if not torch.isfinite(melody).all():
                raise InvalidArgumentError(f"Melody {idx} contains NaN or infinite samples: clean the audio "
                                           "(e.g. torch.nan_to_num) before generating.")
        melody_wavs = [
            convert_audio(wav, melody_sample_rate, self.sample_rate, self.audio_channels, self._resamplers)
            if wav is not None else None
            for wav in melody_wavs]
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(
            descriptions=descriptions, prompt=None, melody_wavs=melody_wavs)
        assert prompt_tokens is None
        return self._generate_output(attributes, prompt_tokens, progress, return_tokens, stream, chunk_seconds)

    def _null_wav_condition(self) -> WavCondition:
        return WavCondition(torch.zeros((1, 1, 1), device=self.device), torch.tensor([0], device=self.device),
                            sample_rate=[self.sample_rate], path=[None])

    @torch.no_grad()
    def _prepare_tokens_and_attributes(
            self, descriptions: tp.Sequence[tp.Optional[str]], prompt: tp.Optional[torch.Tensor],
            melody_wavs: tp.Optional[MelodyList] = None,
    ) -> tp.Tuple[tp.List[ConditioningAttributes], tp.Optional[torch.Tensor]]:
        """Conditioning attributes (text and melody, null melody when absent) and prompt tokens."""
        attributes = [ConditioningAttributes(text={'description': description}) for description in descriptions]
        if melody_wavs is None:
            for attr in attributes:
                attr.wav['self_wav'] = self._null_wav_condition()
        else:
            if 'self_wav' not in self.lm.condition_provider.conditioners:
                raise RuntimeError("This model doesn't support melody conditioning. Use the `melody` model.")
            if len(melody_wavs) != len(descriptions):
                raise InvalidArgumentError(f"number of melody wavs must match number of descriptions! got melody "
                                           f"len={len(melody_wavs)}, and descriptions len={len(descriptions)}")
            for attr, melody in zip(attributes, melody_wavs):
                if melody is None:
                    attr.wav['self_wav'] = self._null_wav_condition()
                else:
                    attr.wav['self_wav'] = WavCondition(
                        melody[None].to(device=self.device), torch.tensor([melody.shape[-1]], device=self.device),
                        sample_rate=[self.sample_rate], path=[None])
        prompt_tokens = self._encode_prompt(descriptions, prompt)
        return attributes, prompt_tokens

    def _chunk_attributes_updater(self, attributes: tp.List[ConditioningAttributes]
                                  ) -> tp.Optional[tp.Callable[[float], None]]:
        # Each window gets the part of the melody it covers; melodies shorter than the window loop.
        ref_wavs = [attr.wav.get('self_wav') for attr in attributes]
        if all(ref is None for ref in ref_wavs):
            return None

        def update(time_offset: float) -> None:
            for attr, ref_wav in zip(attributes, ref_wavs):
                if ref_wav is None:
                    continue
                wav_length = int(ref_wav.length.item())
                if wav_length == 0:
                    continue
                initial_position = int(time_offset * self.sample_rate)
                wav_target_length = int(self.max_duration * self.sample_rate)
                positions = torch.arange(initial_position, initial_position + wav_target_length, device=self.device)
                attr.wav['self_wav'] = WavCondition(
                    ref_wav[0][..., positions % wav_length],
                    torch.full_like(ref_wav[1], wav_target_length),
                    [self.sample_rate] * ref_wav[0].size(0),
                    [None], [0.])
        return update


def get_pretrained_or_demo(name: str = 'facebook/musicgen-small',
                           device: tp.Optional[tp.Union[str, torch.device]] = None,
                           announce: tp.Callable[[str], None] = print) -> MusicGen:
    """`MusicGen.get_pretrained(name)`, or the shipped 'demo' model when the hub cannot provide `name`.

    `announce` receives the one line saying that the demo model is used instead.
    """
    try:
        return MusicGen.get_pretrained(name, device=device)
    except (OSError, RuntimeError, ValueError) as exc:
        # Only a hub model that cannot be reached falls back: a local path the user chose, or a file
        # refused by safe loading, fails loudly.
        if name == 'demo' or looks_like_local_path(name) or Path(name).expanduser().exists() \
                or isinstance(exc, UnsafeCheckpointError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        announce(f"'{name}' is not available ({first}); using the offline 'demo' model shipped "
                 "with audiocraft (small, trained on procedural music).")
        return MusicGen.get_pretrained('demo', device=device)
