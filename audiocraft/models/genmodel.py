"""Base class of the generation models (MusicGen, AudioGen, MAGNeT): a compression model + an LM.

It turns descriptions and audio prompts into LM conditions and prompt tokens, generates tokens
(extending past the LM's training length with a sliding window when asked), and decodes them.
"""
from abc import ABC, abstractmethod
import logging
from pathlib import Path
import typing as tp

import omegaconf
import torch

from ..data.resample import ResamplerCache
from ..modules.conditioners import ConditioningAttributes
from .encodec import CompressionModel
from .lm import LMModel
from ..utils.autocast import TorchAutocast
from ..utils.errors import InvalidArgumentError
from .generation_params import long_generation_note, validate_generation_params
from .progress import GenerationProgress, ProgressCallback, window_plan

logger = logging.getLogger(__name__)


def default_device() -> str:
    """'cuda' when a GPU is available, else 'cpu'."""
    return 'cuda' if torch.cuda.device_count() else 'cpu'


def _check_model_name(name: tp.Any) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"Model name must be a non-empty string, got {name!r}.")


def compression_source(name: str) -> str:
    """Where `get_pretrained(name)` reads the compression model from: beside an LM file
    (`/path/to/state_dict.bin` -> `/path/to/compression_state_dict.bin`), else `name` itself
    (a folder or hub repo holding both files)."""
    from .loaders import COMPRESSION_FILENAME
    path = Path(name)
    if not path.is_file():
        return name
    sibling = path.parent / COMPRESSION_FILENAME
    if not sibling.is_file():
        raise FileNotFoundError(f"{name!r} is an LM file; its compression model is read from {str(sibling)!r}, "
                                f"which does not exist. Put {COMPRESSION_FILENAME} beside it, or pass a folder "
                                "holding both files.")
    return str(sibling)


def check_autoregressive_lm(lm: LMModel, name: str, model_class: str) -> None:
    """Refuse a MAGNeT LM in MusicGen / AudioGen: it generates by masked decoding, not step by step."""
    cfg = getattr(lm, 'cfg', None)
    if (cfg is not None and cfg.get('lm_model') == 'transformer_lm_magnet') or not lm.STEP_DECODING:
        raise ValueError(f"{name!r} is a MAGNeT model (lm_model=transformer_lm_magnet), which {model_class} "
                         "cannot run: load it with MAGNeT.get_pretrained instead.")


def _check_descriptions(descriptions: tp.Any, what: str = "descriptions") -> tp.List[tp.Optional[str]]:
    if isinstance(descriptions, str) or not isinstance(descriptions, (list, tuple)):
        raise InvalidArgumentError(f"{what} must be a list of strings (one per sample), got "
                                   f"{type(descriptions).__name__}; wrap a single description in a list: ['...'].")
    if len(descriptions) == 0:
        raise InvalidArgumentError(f"{what} is empty: pass at least one description "
                                   "(use generate_unconditional for unconditional samples).")
    for desc in descriptions:
        if desc is not None and not isinstance(desc, str):
            raise InvalidArgumentError(f"Each description must be a string or None, got {type(desc).__name__}.")
    return list(descriptions)


class BaseGenModel(ABC):
    """A compression model and a language model generating its tokens.

    Args:
        name: Name of the model.
        compression_model: Compression model turning audio into tokens and back.
        lm: Language model over the tokens.
        max_duration: Longest duration (seconds) the LM generates in one go; by default the
            training segment duration from `lm.cfg`.
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None):
        self.name = name
        self.compression_model = compression_model
        self.lm = lm
        self.cfg: tp.Optional[omegaconf.DictConfig] = None
        self.compression_model.eval()
        self.lm.eval()
        if hasattr(lm, 'cfg'):
            cfg = lm.cfg
            assert isinstance(cfg, omegaconf.DictConfig)
            self.cfg = cfg
        if self.cfg is not None:
            from .builders import get_wrapped_compression_model
            self.compression_model = get_wrapped_compression_model(self.compression_model, self.cfg)
        if max_duration is None:
            if self.cfg is None:
                raise InvalidArgumentError("You must provide max_duration when building directly your GenModel")
            max_duration = self.cfg.dataset.segment_duration
        assert max_duration is not None
        self.max_duration: float = max_duration
        self.duration = self.max_duration
        # Length of each extension when generating past max_duration; set by set_generation_params.
        self.extend_stride: tp.Optional[float] = None
        self.device = next(iter(lm.parameters())).device
        self.generation_params: dict = {}
        self._progress_callback: tp.Optional[ProgressCallback] = None
        # Resampling filters for prompts and melodies, built once per rate pair for this model.
        self._resamplers = ResamplerCache()
        self.linear_kernel: tp.Optional[str] = None
        self.linear_kernel_timings: tp.Dict[str, float] = {}
        if self.device.type == 'cpu':
            self.autocast = TorchAutocast(enabled=False)
            self.optimize_for_cpu('auto')
        else:
            self.autocast = TorchAutocast(enabled=True, device_type=self.device.type, dtype=torch.float16)

    @property
    def frame_rate(self) -> float:
        """Token frames per second."""
        return self.compression_model.frame_rate

    @property
    def sample_rate(self) -> int:
        """Sample rate of the generated audio."""
        return self.compression_model.sample_rate

    @property
    def audio_channels(self) -> int:
        """Number of channels of the generated audio."""
        return self.compression_model.channels

    def optimize_for_cpu(self, precision: str = 'auto', compile: bool = False,
                         kernel: tp.Optional[str] = None) -> 'BaseGenModel':
        """Choose how the LM's linear layers compute on CPU; returns self. Called with 'auto' at load.

        'auto' (the default path): the fastest kernel that is exact for these weights, measured
        on them (`audiocraft.modules.optimized`): float32 oneDNN or `F.linear`, or, when every
        weight is float16-representable (released checkpoints are stored in float16), float16
        packed weights with float32 accumulation, which read half the bytes.
        'fp32': the fastest float32 kernel. 'fp16': force the float16 packing (rounds float32
        weights). 'bf16': bfloat16 weights and activations (~1e-2 relative error on logits).
        'int8': int8 per-channel weights, dynamically quantized activations (~5e-2; fastest).
        `kernel` forces one of 'onednn', 'f_linear', 'fp16', 'bf16', 'int8'. The float32
        parameters stay (state_dict and training unaffected); packed copies add 2 (fp16, bf16)
        or 1 (int8) bytes per weight. `compile=True` (float32 kernels) compiles the decoding step
        with torch.compile (the first call compiles, 15 to 50 s). The choice and its timings are
        logged and kept in `linear_kernel` / `linear_kernel_timings`.
        """
        from torch import nn
        from ..modules.optimized import PRECISIONS, optimize_linears
        if precision not in PRECISIONS:
            raise InvalidArgumentError(f"Unknown precision {precision!r}, expected one of {PRECISIONS}.")
        if precision not in ('auto', 'fp32') and self.device.type != 'cpu':
            raise InvalidArgumentError(f"optimize_for_cpu(precision={precision!r}) needs a model on CPU, this "
                                       f"one is on {self.device}; on GPUs use optimize_for_gpu().")
        if compile and precision not in ('auto', 'fp32'):
            raise InvalidArgumentError("compile=True works with precision='fp32' only (packed weights are opaque "
                                       "to torch.compile).")
        # Only what runs at every step: the conditioners (T5...) run once per call.
        per_step = nn.ModuleList([self.lm.transformer, self.lm.linears])
        rows = 2 if self.lm.STEP_DECODING else 128  # one step with CFG, or a slice of a whole-sequence pass
        try:
            self.linear_kernel, self.linear_kernel_timings = optimize_linears(
                per_step, precision, kernel=kernel, rows=rows, compile=compile)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        self.lm.set_decode_options(compile=compile)
        return self

    def optimize_for_gpu(self, dtype: str = 'fp16', cuda_graph: tp.Optional[bool] = None, compile: bool = False
                         ) -> 'BaseGenModel':
        """Opt in to the fast GPU generation path; returns self.

        dtype: 'fp16' (AudioCraft's autocast, the default on GPUs), 'bf16' (transformer weights
        converted to bfloat16 once; wider range, fewer mantissa bits than the float16 release;
        call get_pretrained again to go back), or 'fp32' (LM converted to float32, no autocast:
        the reference numerics). cuda_graph: capture each decoding step once in a CUDA graph and
        replay it (removes the per-step Python and launch overhead); by default on for
        autoregressive models, off for MAGNeT (whole-sequence passes). compile: also compile the
        step with torch.compile (minutes on first use). See `audiocraft.models.decoding`.
        """
        dtypes = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': torch.float32}
        if dtype not in dtypes:
            raise InvalidArgumentError(f"Unknown dtype {dtype!r}, expected one of {sorted(dtypes)}.")
        if self.device.type != 'cuda':
            raise InvalidArgumentError(f"optimize_for_gpu() needs a model on a CUDA device, this one is on "
                                       f"{self.device}; on CPU use optimize_for_cpu().")
        from ..modules.optimized import restore_linears
        restore_linears(self.lm)  # CPU kernels do not apply on GPUs
        self.linear_kernel, self.linear_kernel_timings = None, {}
        if dtype == 'fp32':
            self.lm.float()
            self.autocast = TorchAutocast(enabled=False)
        else:
            if dtype == 'bf16':
                self.lm.transformer.to(torch.bfloat16)
                if self.lm.transformer.rope is not None:
                    self.lm.transformer.rope.float()  # rotary phases need float32 frequencies
            self.autocast = TorchAutocast(enabled=True, device_type='cuda', dtype=dtypes[dtype])
        if cuda_graph is None:
            cuda_graph = self.lm.STEP_DECODING
        self.lm.set_decode_options(cuda_graph=cuda_graph, compile=compile)
        return self

    def set_custom_progress_callback(self, progress_callback: tp.Optional[ProgressCallback] = None) -> None:
        """Call `progress_callback(steps_done, total_steps)` after each decoding step of every generation.

        Unlike AudioCraft, it fires whether or not `progress=True`, and counts over the whole
        generation (all windows past `max_duration`). Without a callback, `progress=True` shows a
        tqdm bar on stderr. None removes the callback.
        """
        self._progress_callback = progress_callback

    @abstractmethod
    def set_generation_params(self, *args: tp.Any, **kwargs: tp.Any) -> None:
        """Set the generation parameters."""
        raise NotImplementedError()

    @staticmethod
    @abstractmethod
    def get_pretrained(name: str, device: tp.Optional[str] = None) -> 'BaseGenModel':
        """Load a pretrained model by name, folder or hub id."""
        raise NotImplementedError()

    def _set_sampling_params(self, use_sampling: bool, top_k: int, top_p: float, temperature: float,
                             duration: float, cfg_coef: float, two_step_cfg: bool,
                             extend_stride: tp.Optional[float]) -> None:
        """Validate (`validate_generation_params`) and store the autoregressive sampling parameters
        (MusicGen, AudioGen); long durations are logged with an estimate of their cost."""
        checked = validate_generation_params(
            use_sampling=use_sampling, top_k=top_k, top_p=top_p, temperature=temperature, duration=duration,
            cfg_coef=cfg_coef, two_step_cfg=two_step_cfg, extend_stride=extend_stride)
        use_sampling, top_k, top_p = checked['use_sampling'], checked['top_k'], checked['top_p']
        temperature, duration, cfg_coef = checked['temperature'], checked['duration'], checked['cfg_coef']
        two_step_cfg, extend_stride = checked['two_step_cfg'], checked.get('extend_stride')
        self._check_duration_params(duration, extend_stride)
        note = long_generation_note(duration, self.max_duration, extend_stride, self.frame_rate)
        if note is not None:
            logger.warning(note)
        self.extend_stride = extend_stride
        self.duration = duration
        self.generation_params = {
            'use_sampling': use_sampling,
            'temp': temperature,
            'top_k': top_k,
            'top_p': top_p,
            'cfg_coef': cfg_coef,
            'two_step_cfg': two_step_cfg,
        }

    def _check_duration_params(self, duration: float, extend_stride: tp.Optional[float]) -> None:
        validate_generation_params(duration=duration, extend_stride=extend_stride)
        # The stride only matters past max_duration; checking it otherwise would reject the
        # default stride of models trained on short segments.
        if extend_stride is not None and duration > self.max_duration and extend_stride >= self.max_duration:
            raise InvalidArgumentError(f"Cannot stride by more than max generation duration: extend_stride "
                                       f"({extend_stride}) must be smaller than max_duration ({self.max_duration}).")

    @torch.no_grad()
    def _prepare_tokens_and_attributes(
            self, descriptions: tp.Sequence[tp.Optional[str]], prompt: tp.Optional[torch.Tensor],
    ) -> tp.Tuple[tp.List[ConditioningAttributes], tp.Optional[torch.Tensor]]:
        """Conditioning attributes for `descriptions` and prompt tokens for `prompt` audio [B, C, T]."""
        attributes = [ConditioningAttributes(text={'description': description}) for description in descriptions]
        prompt_tokens = self._encode_prompt(descriptions, prompt)
        return attributes, prompt_tokens

    def _encode_prompt(self, descriptions: tp.Optional[tp.Sequence[tp.Optional[str]]],
                       prompt: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        if prompt is None:
            return None
        if descriptions is not None and len(descriptions) != len(prompt):
            raise InvalidArgumentError(f"Prompt and descriptions don't match: {len(prompt)} prompts "
                                       f"for {len(descriptions)} descriptions.")
        prompt = prompt.to(self.device)
        prompt_tokens, scale = self.compression_model.encode(prompt)
        if scale is not None:
            raise RuntimeError("Compression models with a scale (renormalize=True) cannot encode prompts.")
        return prompt_tokens

    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False
                               ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Generate `num_samples` samples without any condition."""
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise InvalidArgumentError(f"num_samples must be a positive integer, got {num_samples!r}.")
        descriptions: tp.List[tp.Optional[str]] = [None] * num_samples
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        return self._generate_output(attributes, prompt_tokens, progress, return_tokens)

    def generate(self, descriptions: tp.List[str], progress: bool = False, return_tokens: bool = False,
                 stream: bool = False, chunk_seconds: float = 1.0) -> tp.Any:
        """Generate one sample per text description.

        With `stream=True`, return an iterator of audio chunks [B, C, n] yielded while the tokens
        are generated, about `chunk_seconds` each (see `audio_stream`); their concatenation is
        the audio `generate` returns, to 1e-3. Up to `max_duration`; `return_tokens` does not apply.
        """
        descriptions = _check_descriptions(descriptions)
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        assert prompt_tokens is None
        return self._generate_output(attributes, prompt_tokens, progress, return_tokens, stream, chunk_seconds)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: tp.Optional[tp.List[tp.Optional[str]]] = None,
                              progress: bool = False, return_tokens: bool = False
                              ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Continue audio `prompt` ([B, C, T] or [C, T], at `prompt_sample_rate`), optionally with descriptions."""
        from ..data.audio_utils import convert_audio
        if not isinstance(prompt, torch.Tensor):
            raise InvalidArgumentError(f"prompt must be a torch.Tensor [B, C, T], got {type(prompt).__name__}.")
        if prompt.dim() == 2:
            prompt = prompt[None]
        if prompt.dim() != 3:
            raise InvalidArgumentError(f"prompt should have 3 dimensions: [B, C, T], got shape {tuple(prompt.shape)}.")
        if not isinstance(prompt_sample_rate, int) or prompt_sample_rate <= 0:
            raise InvalidArgumentError(f"prompt_sample_rate must be a positive integer, got {prompt_sample_rate!r}.")
        if prompt.shape[-1] == 0:
            raise InvalidArgumentError("prompt is empty (0 samples).")
        if not torch.isfinite(prompt).all():
            raise InvalidArgumentError("prompt contains NaN or infinite samples: clean the audio "
                                       "(e.g. torch.nan_to_num) before continuing it.")
        prompt = convert_audio(prompt, prompt_sample_rate, self.sample_rate, self.audio_channels, self._resamplers)
        if descriptions is None:
            descriptions = [None] * len(prompt)
        else:
            descriptions = _check_descriptions(descriptions)
        if len(descriptions) != len(prompt):
            raise InvalidArgumentError(f"Prompt and descriptions don't match: {len(prompt)} prompts "
                                       f"for {len(descriptions)} descriptions.")
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, prompt)
        assert prompt_tokens is not None
        return self._generate_output(attributes, prompt_tokens, progress, return_tokens)

    def _chunk_attributes_updater(self, attributes: tp.List[ConditioningAttributes]
                                  ) -> tp.Optional[tp.Callable[[float], None]]:
        """Hook for conditions that follow the window when extending (MusicGen's melody).

        Called once before the first window; the returned function, if any, is called with the
        window's time offset (seconds) before each window and updates `attributes` in place.
        """
        return None

    def _generate_output(self, attributes: tp.List[ConditioningAttributes], prompt_tokens: tp.Optional[torch.Tensor],
                         progress: bool, return_tokens: bool, stream: bool = False, chunk_seconds: float = 1.0
                         ) -> tp.Any:
        """What the public generate methods return: the audio (and the tokens if `return_tokens`),
        or with `stream` an iterator of audio chunks."""
        if stream:
            return self._stream_audio(attributes, prompt_tokens, chunk_seconds, progress)
        tokens = self._generate_tokens(attributes, prompt_tokens, progress)
        if return_tokens:
            return self.generate_audio(tokens), tokens
        return self.generate_audio(tokens)

    def _generate_tokens(self, attributes: tp.List[ConditioningAttributes],
                         prompt_tokens: tp.Optional[torch.Tensor], progress: bool = False) -> torch.Tensor:
        """Generate tokens [B, K, T] for `self.duration`, windowing past `self.max_duration`.

        Past max_duration, each new window keeps the last `max_duration - extend_stride`
        seconds of tokens as prompt and advances by `extend_stride` seconds.
        """
        self._check_duration_params(self.duration, None)
        total_gen_len = int(self.duration * self.frame_rate)
        max_prompt_len = int(min(self.duration, self.max_duration) * self.frame_rate)
        if prompt_tokens is not None and prompt_tokens.shape[-1] > max_prompt_len:
            raise InvalidArgumentError(f"Prompt is longer than audio to generate: {prompt_tokens.shape[-1]} frames for "
                                       f"{max_prompt_len} (duration {self.duration}s, "
                                       f"max_duration {self.max_duration}s).")
        if prompt_tokens is not None and prompt_tokens.shape[-1] >= total_gen_len:
            raise InvalidArgumentError(f"Prompt ({prompt_tokens.shape[-1]} frames) leaves nothing to generate for a "
                                       f"duration of {self.duration}s ({total_gen_len} frames): increase the duration.")
        prompt_length = 0 if prompt_tokens is None else prompt_tokens.shape[-1]

        if self.duration <= self.max_duration:
            tracker = GenerationProgress([total_gen_len - prompt_length], self._progress_callback, progress)
            try:
                with self.autocast:
                    return self.lm.generate(prompt_tokens, attributes, callback=tracker if tracker.active else None,
                                            max_gen_len=total_gen_len, **self.generation_params)
            finally:
                tracker.close()

        if self.extend_stride is None:
            raise InvalidArgumentError("extend_stride must be set (set_generation_params) to generate "
                                       "beyond max_duration.")
        self._check_duration_params(self.duration, self.extend_stride)
        stride_tokens = int(self.frame_rate * self.extend_stride)
        if stride_tokens <= 0:
            raise InvalidArgumentError(f"extend_stride ({self.extend_stride}s) is shorter than one frame.")

        def window_len(offset: int) -> int:
            return int(min(self.duration - offset / self.frame_rate, self.max_duration) * self.frame_rate)

        tracker = GenerationProgress(window_plan(total_gen_len, prompt_length, window_len, stride_tokens),
                                     self._progress_callback, progress)
        try:
            return self._generate_windows(attributes, prompt_tokens, total_gen_len, stride_tokens, window_len,
                                          tracker)
        finally:
            tracker.close()

    def _generate_windows(self, attributes: tp.List[ConditioningAttributes], prompt_tokens: tp.Optional[torch.Tensor],
                          total_gen_len: int, stride_tokens: int, window_len: tp.Callable[[int], int],
                          tracker: GenerationProgress) -> torch.Tensor:
        """Past max_duration: windows of up to max_duration, each advancing by `stride_tokens`."""
        all_tokens = []
        if prompt_tokens is None:
            prompt_length = 0
        else:
            all_tokens.append(prompt_tokens)
            prompt_length = prompt_tokens.shape[-1]
        update_attributes = self._chunk_attributes_updater(attributes)
        offset = 0
        while offset + prompt_length < total_gen_len:
            if update_attributes is not None:
                update_attributes(offset / self.frame_rate)
            with self.autocast:
                gen_tokens = self.lm.generate(prompt_tokens, attributes, callback=tracker if tracker.active else None,
                                              max_gen_len=window_len(offset), **self.generation_params)
            if prompt_tokens is None:
                all_tokens.append(gen_tokens)
            else:
                all_tokens.append(gen_tokens[:, :, prompt_tokens.shape[-1]:])
            prompt_tokens = gen_tokens[:, :, stride_tokens:]
            prompt_length = prompt_tokens.shape[-1]
            offset += stride_tokens
        return torch.cat(all_tokens, dim=-1)

    def _stream_audio(self, attributes: tp.List[ConditioningAttributes], prompt_tokens: tp.Optional[torch.Tensor],
                      chunk_seconds: float, progress: bool = False) -> tp.Iterator[torch.Tensor]:
        """Audio chunks [B, C, n] decoded with overlap while the LM generates (one window, no extension)."""
        from .audio_stream import StreamingDecoder
        if not self.lm.STEP_DECODING:
            raise InvalidArgumentError(f"{type(self).__name__} decodes whole sequences at once: stream=True does "
                                       "not apply to it.")
        if self.duration > self.max_duration:
            raise InvalidArgumentError(f"stream=True generates up to max_duration ({self.max_duration}s) in one "
                                       f"window; the duration is {self.duration}s.")
        if not chunk_seconds > 0:
            raise InvalidArgumentError(f"chunk_seconds must be positive, got {chunk_seconds}.")
        total = int(self.duration * self.frame_rate)
        if prompt_tokens is not None and prompt_tokens.shape[-1] >= total:
            raise InvalidArgumentError(f"Prompt ({prompt_tokens.shape[-1]} frames) leaves nothing to generate for a "
                                       f"duration of {self.duration}s.")
        decoder = StreamingDecoder(self.compression_model, max(1, int(round(chunk_seconds * self.frame_rate))))
        prompt_length = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
        tracker = GenerationProgress([total - prompt_length], self._progress_callback, progress)
        steps = self.lm.iter_generate(prompt_tokens, attributes, callback=tracker if tracker.active else None,
                                      max_gen_len=total, **self.generation_params)
        try:
            while True:
                # Autocast only around the model's own work: the caller's code runs between chunks.
                with self.autocast:
                    try:
                        ready, codes = next(steps)
                    except StopIteration as stop:
                        final_codes = stop.value
                        break
                    chunk = decoder.push(codes, ready)
                if chunk is not None:
                    yield chunk
            with self.autocast:
                chunk = decoder.push(lambda: final_codes, final_codes.shape[-1], final=True)
            if chunk is not None:
                yield chunk
        finally:
            steps.close()  # leaves the LM's streaming state if the caller stops early
            tracker.close()

    def generate_audio(self, gen_tokens: torch.Tensor) -> torch.Tensor:
        """Decode tokens [B, K, T] into audio [B, C, T_audio]."""
        if gen_tokens.dim() != 3:
            raise InvalidArgumentError(f"Tokens must be [B, K, T], got shape {tuple(gen_tokens.shape)}.")
        with torch.no_grad():
            return self.compression_model.decode(gen_tokens, None)
