"""LAION-CLAP (HTS-AT audio encoder without fusion, RoBERTa text encoder) in plain PyTorch.

The module tree and parameter names are laion_clap's `CLAP` model (`audio_branch`, `text_branch`,
`audio_projection`, `text_projection`, `audio_transform`, `text_transform`, `logit_scale_a`,
`logit_scale_t`), so released checkpoints such as `630k-audioset-best.pt` or
`music_audioset_epoch_15_esc_90.14.pt` load unchanged, through AudioCraft's safe loader, and
`laion_clap` itself is not needed. The text encoder is transformers' `RobertaModel` built from the
`roberta-base` config (weights come from the CLAP checkpoint); its tokenizer pads to 77 tokens.
"""
import logging
from pathlib import Path
import types
import typing as tp

import torch
from torch import nn

from .htsat import HTSAT, HTSATConfig

logger = logging.getLogger(__name__)

# laion_clap's audio encoders without fusion. Read-only: a model is picked by name, never registered.
HTSAT_PRESETS: tp.Mapping[str, HTSATConfig] = types.MappingProxyType({
    'HTSAT-tiny': HTSATConfig(embed_dim=96, depths=(2, 2, 6, 2)),
    'HTSAT-base': HTSATConfig(),
    'HTSAT-large': HTSATConfig(embed_dim=256),
})
TEXT_MAX_LENGTH = 77
# Buffers older transformers saved with RoBERTa and newer ones rebuild (laion_clap drops them too).
_STALE_KEYS = ('text_branch.embeddings.position_ids', 'text_branch.embeddings.token_type_ids')


class _MLPLayers(nn.Module):
    """laion_clap's `MLPLayers` ([Linear, ReLU, Dropout] repeated, last ReLU and Dropout dropped)."""

    def __init__(self, units: tp.Sequence[int], dropout: float = 0.1) -> None:
        super().__init__()
        layers: tp.List[nn.Module] = []
        for u0, u1 in zip(units[:-1], units[1:]):
            layers += [nn.Linear(u0, u1), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*layers[:-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def _projection(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class CLAP(nn.Module):
    """The CLAP network: audio and text encoders, their projections to the joint space, and the
    logit scales. Embeddings are L2-normalised, as laion_clap's `get_*_embedding`.

    Args:
        audio_cfg: HTS-AT sizes (see `HTSAT_PRESETS`).
        text_config: a transformers `RobertaConfig` (laion_clap uses `roberta-base`'s).
        joint_embed_dim: size of the joint embedding space.
    """

    def __init__(self, audio_cfg: HTSATConfig, text_config: tp.Any, joint_embed_dim: int = 512) -> None:
        super().__init__()
        from transformers import RobertaModel
        self.audio_cfg = audio_cfg
        self.audio_branch = HTSAT(audio_cfg)
        self.text_branch = RobertaModel(text_config, add_pooling_layer=True)
        self.text_transform = _MLPLayers([joint_embed_dim] * 3)
        self.text_projection = _projection(text_config.hidden_size, joint_embed_dim)
        self.audio_transform = _MLPLayers([joint_embed_dim] * 3)
        self.audio_projection = _projection(audio_cfg.num_features, joint_embed_dim)
        self.logit_scale_a = nn.Parameter(torch.tensor(1 / 0.07).log())
        self.logit_scale_t = nn.Parameter(torch.tensor(1 / 0.07).log())

    def get_text_embedding(self, tokens: tp.Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Tokenizer output (`input_ids`, `attention_mask`) -> [B, joint_embed_dim] unit vectors."""
        device = self.logit_scale_t.device
        pooled = self.text_branch(input_ids=tokens['input_ids'].to(device),
                                  attention_mask=tokens['attention_mask'].to(device))['pooler_output']
        return nn.functional.normalize(self.text_projection(pooled), dim=-1)

    def get_audio_embedding(self, waveforms: torch.Tensor) -> torch.Tensor:
        """[B, clip_samples] waveforms at `audio_cfg.sample_rate` -> [B, joint_embed_dim] unit vectors."""
        embed = self.audio_branch(waveforms.to(self.logit_scale_a.device))
        return nn.functional.normalize(self.audio_projection(embed), dim=-1)


def crop_or_repeat_pad(wav: torch.Tensor, clip_samples: int,
                       generator: tp.Optional[torch.Generator] = None) -> torch.Tensor:
    """laion_clap's non-fusion input: a 1-D waveform longer than `clip_samples` is cropped at a random
    offset (`generator` makes it reproducible); a shorter one is repeated a whole number of times,
    then zero-padded to `clip_samples`."""
    length = wav.shape[-1]
    if length == 0:
        raise ValueError("CLAP got an empty waveform: give at least one sample per item.")
    if length > clip_samples:
        start = int(torch.randint(0, length - clip_samples + 1, (1,), generator=generator))
        return wav[start:start + clip_samples]
    if length < clip_samples:
        wav = wav.repeat(clip_samples // length)
        wav = nn.functional.pad(wav, (0, clip_samples - wav.shape[-1]))
    return wav


class CLAPModule(nn.Module):
    """A CLAP network with its tokenizer, and the embedding helpers of laion_clap's `CLAP_Module`.

    Build it with `load_clap_module`.
    """

    def __init__(self, model: CLAP, tokenizer: tp.Any) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio the model takes (48 kHz for released models)."""
        return self.model.audio_cfg.sample_rate

    def tokenize(self, texts: tp.Sequence[str]) -> tp.Dict[str, torch.Tensor]:
        """RoBERTa tokens padded (and truncated) to 77, as laion_clap."""
        return dict(self.tokenizer(list(texts), padding='max_length', truncation=True,
                                   max_length=TEXT_MAX_LENGTH, return_tensors='pt'))

    def get_text_embedding(self, texts: tp.Sequence[str], tokenizer: tp.Optional[tp.Callable] = None,
                           use_tensor: bool = True) -> tp.Any:
        """[len(texts), joint_embed_dim] unit-norm text embeddings. `tokenizer` (a callable returning
        `input_ids` and `attention_mask`) replaces `tokenize`; `use_tensor=False` returns a numpy
        array. Both as in laion_clap, whose default is numpy."""
        tokens = (tokenizer or self.tokenize)(list(texts))
        embed = self.model.get_text_embedding(tokens)
        return embed if use_tensor else embed.detach().cpu().numpy()

    def get_audio_embedding_from_data(self, wavs: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]],
                                      use_tensor: bool = True,
                                      generator: tp.Optional[torch.Generator] = None) -> tp.Any:
        """Mono waveforms at `sample_rate` ([B, T] or B 1-D tensors) -> [B, joint_embed_dim] unit-norm
        embeddings, each input first cropped or repeat-padded to 10 s (`crop_or_repeat_pad`), like
        laion_clap's `get_audio_embedding_from_data(x, use_tensor=True)` for non-fusion models
        (`use_tensor=False` returns a numpy array; unlike laion_clap, inputs are not quantized to 16 bits)."""
        clip = self.model.audio_cfg.clip_samples
        batch = torch.stack([crop_or_repeat_pad(torch.as_tensor(wav), clip, generator) for wav in wavs])
        embed = self.model.get_audio_embedding(batch)
        return embed if use_tensor else embed.detach().cpu().numpy()


def clap_state_dict(checkpoint: tp.Any) -> tp.Dict[str, torch.Tensor]:
    """The CLAP weights of a laion_clap checkpoint: its `state_dict` entry (or the object itself),
    without the `module.` prefix of distributed training and without buffers transformers rebuilds."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError("Not a CLAP checkpoint: expected a dict with a 'state_dict' entry (laion_clap's format).")
    state = {(key[len('module.'):] if key.startswith('module.') else key): value for key, value in state.items()}
    return {key: value for key, value in state.items() if key not in _STALE_KEYS}


def _text_parts(text_model: str) -> tp.Tuple[tp.Any, tp.Any]:
    """RoBERTa tokenizer and config from the Hugging Face hub (or its cache)."""
    from transformers import RobertaConfig, RobertaTokenizer
    try:
        tokenizer, config = RobertaTokenizer.from_pretrained(text_model), RobertaConfig.from_pretrained(text_model)
    except OSError as exc:
        raise OSError(f"CLAP needs the '{text_model}' tokenizer and config from the Hugging Face hub: run once "
                      f"with network access to cache them, or set HF_HUB_CACHE to a cache holding them. ({exc})"
                      ) from exc
    if len(tokenizer) != config.vocab_size:
        # e.g. a cache holding the config but not the tokenizer files: texts would be mis-tokenized.
        logger.warning("The '%s' tokenizer has %d tokens but its config %d: check the cached tokenizer files.",
                       text_model, len(tokenizer), config.vocab_size)
    return tokenizer, config


def load_clap_module(checkpoint: tp.Union[str, Path], model_arch: str = 'HTSAT-base', enable_fusion: bool = False,
                     text_model: str = 'roberta-base',
                     device: tp.Union[str, torch.device] = 'cpu') -> CLAPModule:
    """A released LAION-CLAP model from its checkpoint file (local path or `//reference/...`), in eval mode.

    Args:
        checkpoint: laion_clap checkpoint, e.g. `music_audioset_epoch_15_esc_90.14.pt`.
        model_arch: audio encoder, a key of `HTSAT_PRESETS` ('HTSAT-base' for the released music model).
        enable_fusion: feature fusion; only non-fusion checkpoints are supported.
        text_model: hub name of the RoBERTa tokenizer and config.
        device: where to put the model.
    """
    from ...environment import AudioCraftEnvironment
    from ...utils.safe_load import safe_torch_load
    if enable_fusion:
        raise NotImplementedError("CLAP with feature fusion is not supported: use a non-fusion checkpoint (e.g. "
                                  "630k-audioset-best.pt, music_audioset_epoch_15_esc_90.14.pt), enable_fusion=False.")
    if model_arch not in HTSAT_PRESETS:
        raise ValueError(f"Unknown CLAP audio encoder {model_arch!r}: use one of {sorted(HTSAT_PRESETS)}.")
    path = AudioCraftEnvironment.resolve_reference_path(str(checkpoint))
    if not path.is_file():
        raise FileNotFoundError(f"CLAP checkpoint not found: {path}. See docs/METRICS.md for where to download it.")
    tokenizer, text_config = _text_parts(text_model)
    model = CLAP(HTSAT_PRESETS[model_arch], text_config)
    state = clap_state_dict(safe_torch_load(path, what='CLAP checkpoint'))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RuntimeError(f"{path} does not fit a non-fusion CLAP with model_arch={model_arch!r} and the "
                           f"'{text_model}' text encoder: check model_arch (the music checkpoints use HTSAT-base, "
                           f"630k-*.pt use HTSAT-tiny). {exc}") from exc
    return CLAPModule(model, tokenizer).to(device).eval()
