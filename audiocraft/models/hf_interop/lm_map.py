"""The MusicGen LM both ways: our `LMModel` (+ its conditioners' projections) <-> transformers' decoder.

Names (ours -> transformers `MusicgenForConditionalGeneration` / `MusicgenMelodyForConditionalGeneration`):
  emb.<k>.weight                                   decoder.model.decoder.embed_tokens.<k>.weight
  transformer.layers.<i>.self_attn.in_proj_weight  rows [q; k; v] -> ...layers.<i>.self_attn.{q,k,v}_proj.weight
  transformer.layers.<i>.self_attn.out_proj.weight ...layers.<i>.self_attn.out_proj.weight
  transformer.layers.<i>.norm1.*                   ...layers.<i>.self_attn_layer_norm.*
  transformer.layers.<i>.cross_attention.*         ...layers.<i>.encoder_attn.* (same split)
  transformer.layers.<i>.norm_cross.*              ...layers.<i>.encoder_attn_layer_norm.*
  transformer.layers.<i>.linear1/linear2.weight    ...layers.<i>.fc1/fc2.weight
  transformer.layers.<i>.norm2.*                   ...layers.<i>.final_layer_norm.*
  out_norm.*                                       decoder.model.decoder.layer_norm.*
  linears.<k>.weight                               decoder.lm_heads.<k>.weight
  condition_provider.conditioners.description.output_proj.*   enc_to_dec_proj.*
  condition_provider.conditioners.self_wav.output_proj.*      audio_enc_to_dec_proj.* (melody)
The chroma extractor's window (`...self_wav.chroma.spec.window`) is a fixed Hann window, rebuilt on load.
"""
import typing as tp

import torch
from omegaconf import OmegaConf

from .errors import NotConvertibleError

_DEC = 'decoder.model.decoder.'
_LAYER_RENAMES = {
    'self_attn.out_proj.weight': 'self_attn.out_proj.weight',
    'cross_attention.out_proj.weight': 'encoder_attn.out_proj.weight',
    'norm1.weight': 'self_attn_layer_norm.weight', 'norm1.bias': 'self_attn_layer_norm.bias',
    'norm_cross.weight': 'encoder_attn_layer_norm.weight', 'norm_cross.bias': 'encoder_attn_layer_norm.bias',
    'norm2.weight': 'final_layer_norm.weight', 'norm2.bias': 'final_layer_norm.bias',
    'linear1.weight': 'fc1.weight', 'linear2.weight': 'fc2.weight',
}
_IN_PROJ = {'self_attn.in_proj_weight': 'self_attn', 'cross_attention.in_proj_weight': 'encoder_attn'}
_PROJ = {'condition_provider.conditioners.description.output_proj': 'enc_to_dec_proj',
         'condition_provider.conditioners.self_wav.output_proj': 'audio_enc_to_dec_proj'}
CHROMA_WINDOW = 'condition_provider.conditioners.self_wav.chroma.spec.window'

# transformer_lm options with the only value transformers' MusicGen decoder implements.
_FIXED_LM = {
    'norm': 'layer_norm', 'norm_first': True, 'bias_ff': False, 'bias_attn': False, 'bias_proj': False,
    'past_context': None, 'causal': True, 'layer_scale': None, 'positional_embedding': 'sin', 'xpos': False,
    'qk_layer_norm': False, 'qk_layer_norm_cross': False, 'kv_repeat': 1, 'activation': 'gelu',
    'positional_scale': 1.0, 'max_period': 10000, 'emb_lr': None,
}


def stereo_delays(n_q: int, stereo: bool) -> tp.List[int]:
    """The only delays transformers implements: k for codebook k (stereo: L and R of level k share k)."""
    return [k // 2 for k in range(n_q)] if stereo else list(range(n_q))


def check_lm_cfg(cfg: tp.Any) -> str:
    """Refuse (NotConvertibleError, saying why) LM configs transformers cannot express; return 'text' or 'melody'."""
    if cfg.get('lm_model', 'transformer_lm') != 'transformer_lm':
        raise NotConvertibleError(f"lm_model={cfg.get('lm_model')!r} (MAGNeT's masked non-autoregressive LM) has "
                                  "no transformers counterpart: transformers only implements autoregressive MusicGen.")
    lm = OmegaConf.to_container(cfg.transformer_lm, resolve=True)
    assert isinstance(lm, dict)
    for key, expected in _FIXED_LM.items():
        if key in lm and lm[key] != expected and not (key == 'max_period' and float(lm[key]) == expected):
            raise NotConvertibleError(f"transformer_lm.{key}={lm[key]!r}: transformers' MusicGen decoder only "
                                      f"implements {key}={expected!r}.")
    n_q = int(lm['n_q'])
    stereo = bool(cfg.get('interleave_stereo_codebooks', {}).get('use', False))
    if stereo and cfg.interleave_stereo_codebooks.get('per_timestep', False):
        raise NotConvertibleError("stereo codes interleaved per timestep: transformers interleaves per codebook.")
    pattern = cfg.codebooks_pattern
    delays = list(pattern.get('delay', {}).get('delays', [])) if pattern.get('modeling') == 'delay' else None
    if delays is None or delays != stereo_delays(n_q, stereo) or pattern.delay.get('flatten_first', 0) \
            or pattern.delay.get('empty_initial', 0):
        raise NotConvertibleError(f"codebook pattern {pattern.get('modeling')!r} with delays {delays}: transformers "
                                  f"only implements the delay pattern {stereo_delays(n_q, stereo)}.")
    if int(int(lm.get('hidden_scale', 4) * lm['dim'])) <= 0:
        raise NotConvertibleError("transformer_lm.hidden_scale gives an empty feed-forward layer.")
    conditioners = OmegaConf.to_container(cfg.conditioners, resolve=True) or {}
    assert isinstance(conditioners, dict)
    conditioners.pop('args', None)
    desc = conditioners.get('description', {})
    if desc.get('model') != 't5':
        raise NotConvertibleError("the text conditioner 'description' is not a T5 encoder; transformers' MusicGen "
                                  "encodes text with T5 only.")
    if desc.get('t5', {}).get('normalize_text', False):
        raise NotConvertibleError("the T5 conditioner normalizes text (spaCy lemmas, stop words); transformers "
                                  "feeds the raw text to its tokenizer.")
    fuser = cfg.fuser
    if fuser.get('cross_attention_pos_emb', False):
        raise NotConvertibleError("fuser.cross_attention_pos_emb adds positions to the text; transformers does not.")
    fused = {m: list(fuser.get(m) or []) for m in ('sum', 'prepend', 'cross', 'input_interpolate')}
    extra = sorted(set(conditioners) - {'description', 'self_wav'})
    if extra:
        raise NotConvertibleError(f"conditioners {extra}: transformers' MusicGen only has text (T5) and melody "
                                  "(chroma) conditioning.")
    if 'self_wav' not in conditioners:
        if fused != {'sum': [], 'prepend': [], 'cross': ['description'], 'input_interpolate': []}:
            raise NotConvertibleError(f"fuser {fused}: transformers' MusicGen cross-attends to the text only.")
        return 'text'
    wav = conditioners['self_wav']
    if wav.get('model') != 'chroma_stem':
        raise NotConvertibleError("the 'self_wav' conditioner is not chroma_stem; transformers' MusicGen Melody "
                                  "conditions on chroma only.")
    if fused != {'sum': [], 'prepend': ['self_wav', 'description'], 'cross': [], 'input_interpolate': []}:
        raise NotConvertibleError(f"fuser {fused}: transformers' MusicGen Melody prepends chroma then text.")
    if not wav.get('chroma_stem', {}).get('argmax', False):
        raise NotConvertibleError("the chroma is not one-hot (argmax=False); transformers' MusicGen Melody feature "
                                  "extractor and unconditional input assume one-hot chroma.")
    return 'melody'


def lm_state_to_hf(state: tp.Dict[str, torch.Tensor], dim: int) -> tp.Dict[str, torch.Tensor]:
    """Our LM state_dict -> transformers keys (decoder, enc_to_dec_proj, audio_enc_to_dec_proj)."""
    out = {}
    for key, value in state.items():
        if key == CHROMA_WINDOW:
            continue
        parts = key.split('.')
        if parts[0] == 'emb':
            out[f'{_DEC}embed_tokens.{parts[1]}.weight'] = value
        elif parts[0] == 'linears':
            out[f'decoder.lm_heads.{parts[1]}.weight'] = value
        elif parts[0] == 'out_norm':
            out[f'{_DEC}layer_norm.{parts[1]}'] = value
        elif parts[0] == 'transformer' and parts[1] == 'layers':
            prefix, rest = f'{_DEC}layers.{parts[2]}.', '.'.join(parts[3:])
            if rest in _IN_PROJ:
                for name, chunk in zip('qkv', value.split(dim, dim=0)):
                    out[f'{prefix}{_IN_PROJ[rest]}.{name}_proj.weight'] = chunk
            elif rest in _LAYER_RENAMES:
                out[prefix + _LAYER_RENAMES[rest]] = value
            else:
                raise NotConvertibleError(f"LM weight {key!r} has no counterpart in transformers' MusicGen decoder.")
        elif key.rsplit('.', 1)[0] in _PROJ:
            out[f"{_PROJ[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}"] = value
        else:
            raise NotConvertibleError(f"LM weight {key!r} has no counterpart in transformers' MusicGen.")
    return out


def lm_state_from_hf(hf_state: tp.Dict[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    """transformers decoder (+ projections) weights -> our LM state_dict; other keys are ignored."""
    inverse = {theirs: ours for ours, theirs in _LAYER_RENAMES.items()}
    inverse_proj = {theirs: ours for ours, theirs in _PROJ.items()}
    out: tp.Dict[str, torch.Tensor] = {}
    qkv: tp.Dict[str, tp.Dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        if key.startswith(f'{_DEC}embed_tokens.'):
            out[f"emb.{key.split('.')[-2]}.weight"] = value
        elif key.startswith('decoder.lm_heads.'):
            out[f"linears.{key.split('.')[-2]}.weight"] = value
        elif key.startswith(f'{_DEC}layer_norm.'):
            out[f"out_norm.{key.split('.')[-1]}"] = value
        elif key.startswith(f'{_DEC}layers.'):
            idx, rest = key[len(_DEC) + len('layers.'):].split('.', 1)
            attn, _, leaf = rest.partition('.')
            if leaf in ('q_proj.weight', 'k_proj.weight', 'v_proj.weight') and attn in ('self_attn', 'encoder_attn'):
                ours = 'self_attn' if attn == 'self_attn' else 'cross_attention'
                qkv.setdefault(f'transformer.layers.{idx}.{ours}.in_proj_weight', {})[leaf[0]] = value
            elif rest in inverse:
                out[f'transformer.layers.{idx}.{inverse[rest]}'] = value
            else:
                raise NotConvertibleError(f"transformers weight {key!r} has no counterpart in AudioCraft's LM "
                                          "(biases in attention or feed-forward layers are not supported).")
        elif key.rsplit('.', 1)[0] in inverse_proj:
            out[f"{inverse_proj[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}"] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts['q'], parts['k'], parts['v']], dim=0)
    return out


_LAYER_ORDER = ['self_attn.in_proj_weight', 'self_attn.out_proj.weight', 'linear1.weight', 'linear2.weight',
                'norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias', 'cross_attention.in_proj_weight',
                'cross_attention.out_proj.weight', 'norm_cross.weight', 'norm_cross.bias']


def order_like_audiocraft(state: tp.Dict[str, torch.Tensor], conditioners: tp.Sequence[str]
                          ) -> tp.Dict[str, torch.Tensor]:
    """`state` in the key order of AudioCraft's own LM state_dict (module registration order), so that
    converted files list their tensors exactly as the originals do."""
    def rank(key: str) -> tp.Tuple:
        parts = key.split('.')
        if parts[0] == 'condition_provider':
            name, rest = parts[2], '.'.join(parts[3:])
            sub = {'output_proj.weight': 0, 'output_proj.bias': 1}.get(rest, 2)
            return (0, conditioners.index(name) if name in conditioners else len(conditioners), sub, rest)
        if parts[0] == 'emb':
            return (1, int(parts[1]))
        if parts[0] == 'transformer':
            rest = '.'.join(parts[3:])
            return (2, int(parts[2]), _LAYER_ORDER.index(rest) if rest in _LAYER_ORDER else len(_LAYER_ORDER), rest)
        if parts[0] == 'out_norm':
            return (3, ['weight', 'bias'].index(parts[1]) if parts[1] in ('weight', 'bias') else 2)
        return (4, int(parts[1]) if parts[0] == 'linears' else 0, key)
    return {key: state[key] for key in sorted(state, key=rank)}


def hf_decoder_kwargs_from_cfg(cfg: tp.Any) -> dict:
    """Keyword arguments of transformers' `MusicgenDecoderConfig` for our LM `xp.cfg`."""
    lm = cfg.transformer_lm
    dim, card = int(lm.dim), int(lm.card)
    stereo = bool(cfg.get('interleave_stereo_codebooks', {}).get('use', False))
    return dict(vocab_size=card, max_position_embeddings=2048, num_hidden_layers=int(lm.num_layers),
                ffn_dim=int(lm.get('hidden_scale', 4) * dim), num_attention_heads=int(lm.num_heads),
                layerdrop=0.0, use_cache=True, activation_function='gelu', hidden_size=dim, dropout=0.0,
                attention_dropout=0.0, activation_dropout=0.0, scale_embedding=False, num_codebooks=int(lm.n_q),
                audio_channels=2 if stereo else 1, pad_token_id=card, bos_token_id=card, tie_word_embeddings=False)


def lm_cfg_from_hf(config: tp.Any, melody: bool, t5_name: str, segment_duration: float = 30.0,
                   cfg_coef: float = 3.0, embed_text_encoder: bool = False) -> tp.Any:
    """AudioCraft LM `xp.cfg` for a transformers MusicGen config (loadable by AudioCraft's builders)."""
    dec = config.decoder
    dim, n_q, stereo = int(dec.hidden_size), int(dec.num_codebooks), int(dec.audio_channels) == 2
    if dec.activation_function != 'gelu' or dec.scale_embedding:
        raise NotConvertibleError(f"decoder activation {dec.activation_function!r} / scale_embedding="
                                  f"{dec.scale_embedding}: AudioCraft's LM uses exact gelu and unscaled embeddings.")
    if dec.ffn_dim % dim:
        raise NotConvertibleError(f"ffn_dim {dec.ffn_dim} is not a multiple of hidden_size {dim}.")
    if dec.pad_token_id != dec.vocab_size:
        raise NotConvertibleError(f"pad/start token {dec.pad_token_id} is not vocab_size ({dec.vocab_size}), the "
                                  "special token AudioCraft's LM uses.")
    conditioners: dict = {'description': {'model': 't5', 't5': {
        'name': t5_name, 'finetune': embed_text_encoder, 'word_dropout': 0.0, 'normalize_text': False}}}
    fuser = {'cross_attention_pos_emb': False, 'cross_attention_pos_emb_scale': 1, 'sum': [],
             'prepend': [], 'cross': ['description'], 'input_interpolate': []}
    sample_rate = int(config.audio_encoder.sampling_rate)
    if melody:
        conditioners = {'self_wav': {'model': 'chroma_stem', 'chroma_stem': {
            'sample_rate': sample_rate, 'n_chroma': int(config.num_chroma), 'radix2_exp': 14, 'argmax': True,
            'match_len_on_eval': False, 'eval_wavs': None, 'n_eval_wavs': 100, 'cache_path': None}}, **conditioners}
        fuser.update(prepend=['self_wav', 'description'], cross=[])
    return OmegaConf.create({
        'solver': 'musicgen', 'device': 'cpu', 'dtype': 'float32', 'lm_model': 'transformer_lm',
        'sample_rate': sample_rate, 'channels': 2 if stereo else int(config.audio_encoder.audio_channels),
        'compression_model_n_q': None,
        'interleave_stereo_codebooks': {'use': stereo, 'per_timestep': False},
        'dataset': {'segment_duration': segment_duration},
        'classifier_free_guidance': {'training_dropout': 0.0, 'inference_coef': cfg_coef},
        'attribute_dropout': {}, 'fuser': fuser, 'conditioners': conditioners,
        'codebooks_pattern': {'modeling': 'delay', 'delay': {
            'delays': stereo_delays(n_q, stereo), 'flatten_first': 0, 'empty_initial': 0}},
        'transformer_lm': {
            'dim': dim, 'num_heads': int(dec.num_attention_heads), 'num_layers': int(dec.num_hidden_layers),
            'hidden_scale': int(dec.ffn_dim) // dim, 'n_q': n_q, 'card': int(dec.vocab_size), 'dropout': 0.0,
            'emb_lr': None, 'activation': 'gelu', 'norm_first': True, 'bias_ff': False, 'bias_attn': False,
            'bias_proj': False, 'past_context': None, 'causal': True, 'custom': False, 'memory_efficient': True,
            'attention_as_float32': False, 'layer_scale': None, 'positional_embedding': 'sin', 'xpos': False,
            'checkpointing': 'none', 'weight_init': 'gaussian', 'depthwise_init': 'current', 'zero_bias_init': True,
            'norm': 'layer_norm', 'cross_attention': not melody, 'qk_layer_norm': False,
            'qk_layer_norm_cross': False, 'attention_dropout': None, 'kv_repeat': 1, 'two_step_cfg': False},
    })
