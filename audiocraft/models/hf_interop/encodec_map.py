"""EnCodec both ways: our SEANet `EncodecModel` <-> transformers `EncodecModel`.

Both are the same SEANet network, laid out with the same module indices, so the mapping is
a renaming: `encoder.model.<i>.conv.conv.weight_g|weight_v` <-> `encoder.layers.<i>.conv.
parametrizations.weight.original0|original1`, `decoder.model.<i>.convtr.convtr.*` <->
`decoder.layers.<i>.conv.*`, `quantizer.vq.layers.<k>._codebook.*` <-> `quantizer.layers.<k>.codebook.*`
(LSTM keys keep their names). The tensors are copied unchanged (weight norm's g and v are kept
as they are), so a round trip is bit-identical.
"""
import math
import re
import typing as tp

import torch
from omegaconf import OmegaConf

from .errors import NotConvertibleError

# SEANet options transformers' EncodecConfig cannot express, with the value it implies.
_FIXED_SEANET = {
    'activation': 'ELU',
    'activation_params': {'alpha': 1.0},
    'norm': 'weight_norm',
    'disable_norm_outer_blocks': 0,
}


def _seanet_kwargs(cfg: tp.Any, side: str) -> dict:
    seanet = OmegaConf.to_container(cfg.seanet, resolve=True)
    assert isinstance(seanet, dict)
    encoder = seanet.pop('encoder', None) or {}
    decoder = seanet.pop('decoder', None) or {}
    return {**seanet, **(encoder if side == 'encoder' else decoder)}


def hf_encodec_config_from_cfg(cfg: tp.Any) -> tp.Any:
    """transformers `EncodecConfig` equivalent to an AudioCraft compression `xp.cfg`; refuses what has none."""
    from transformers import EncodecConfig
    if cfg.get('compression_model') != 'encodec' or cfg.encodec.get('autoencoder') != 'seanet':
        raise NotConvertibleError("the compression model is not a SEANet EnCodec; transformers only has EncodecModel.")
    if cfg.encodec.get('quantizer') != 'rvq':
        raise NotConvertibleError(f"the codec uses the {cfg.encodec.get('quantizer')!r} quantizer; transformers' "
                                  "EncodecModel needs a residual vector quantizer (rvq).")
    enc, dec = _seanet_kwargs(cfg, 'encoder'), _seanet_kwargs(cfg, 'decoder')
    shared = set(enc) & set(dec) - {'trim_right_ratio', 'final_activation', 'final_activation_params'}
    differing = sorted(k for k in shared if enc[k] != dec[k])
    if differing:
        raise NotConvertibleError(f"the SEANet encoder and decoder differ in {differing}; transformers' "
                                  "EncodecConfig has one value for both.")
    for key, expected in _FIXED_SEANET.items():
        if enc.get(key, expected) != expected:
            raise NotConvertibleError(f"seanet.{key}={enc.get(key)!r}, transformers' EncodecModel only has "
                                      f"{key}={expected!r}.")
    if dec.get('final_activation') is not None:
        raise NotConvertibleError("the SEANet decoder has a final activation; transformers' EncodecModel has none.")
    if int(enc.get('lstm', 0)) < 1:
        raise NotConvertibleError("the SEANet codec has no LSTM; transformers' EncodecModel always has one.")
    bins = int(cfg.rvq.bins)
    if 2 ** int(math.log2(bins)) != bins:
        raise NotConvertibleError(f"codebook size {bins} is not a power of 2, as transformers' EncodecModel needs.")
    ratios = [int(r) for r in enc['ratios']]
    hop = math.prod(ratios)
    sample_rate = int(cfg.encodec.sample_rate)
    if sample_rate % hop:
        raise NotConvertibleError(f"the frame rate {sample_rate}/{hop} is not an integer, as transformers needs.")
    n_q = int(cfg.rvq.n_q)
    # transformers derives the number of codebooks from a bandwidth in kbps: pick the exact one.
    bandwidth = n_q * (sample_rate // hop) * int(math.log2(bins)) / 1000
    config = EncodecConfig(
        target_bandwidths=[bandwidth], sampling_rate=sample_rate, audio_channels=int(cfg.encodec.channels),
        normalize=bool(cfg.encodec.get('renormalize', False) or cfg.encodec.get('renorm', False)),
        chunk_length_s=None, overlap=None, hidden_size=int(enc['dimension']), num_filters=int(enc['n_filters']),
        num_residual_layers=int(enc['n_residual_layers']), upsampling_ratios=ratios, norm_type='weight_norm',
        kernel_size=int(enc['kernel_size']), last_kernel_size=int(enc['last_kernel_size']),
        residual_kernel_size=int(enc['residual_kernel_size']), dilation_growth_rate=int(enc['dilation_base']),
        use_causal_conv=bool(enc['causal']), pad_mode=str(enc['pad_mode']), compress=int(enc['compress']),
        num_lstm_layers=int(enc['lstm']), trim_right_ratio=float(dec.get('trim_right_ratio', 1.0)),
        codebook_size=bins, codebook_dim=int(enc['dimension']), use_conv_shortcut=not bool(enc['true_skip']))
    if config.num_quantizers != n_q:
        raise NotConvertibleError(f"transformers computes {config.num_quantizers} codebooks from bandwidth "
                                  f"{bandwidth}, the codec has {n_q}.")
    return config


def compression_cfg_from_hf(config: tp.Any) -> tp.Any:
    """AudioCraft compression `xp.cfg` (an OmegaConf config) for a transformers `EncodecConfig`."""
    if config.norm_type != 'weight_norm':
        raise NotConvertibleError(f"EnCodec norm_type={config.norm_type!r}: only weight_norm maps onto AudioCraft's "
                                  "SEANet checkpoints.")
    if config.chunk_length_s is not None:
        raise NotConvertibleError("the EnCodec model encodes in overlapping chunks (chunk_length_s is set), "
                                  "which AudioCraft's EncodecModel does not do.")
    n_q = int(config.num_quantizers)
    return OmegaConf.create({
        'solver': 'compression', 'device': 'cpu', 'dtype': 'float32',
        'sample_rate': int(config.sampling_rate), 'channels': int(config.audio_channels),
        'compression_model': 'encodec',
        'encodec': {'autoencoder': 'seanet', 'quantizer': 'rvq', 'sample_rate': int(config.sampling_rate),
                    'channels': int(config.audio_channels), 'causal': bool(config.use_causal_conv),
                    'renormalize': bool(config.normalize)},
        'seanet': {'dimension': int(config.hidden_size), 'channels': int(config.audio_channels),
                   'causal': bool(config.use_causal_conv), 'n_filters': int(config.num_filters),
                   'n_residual_layers': int(config.num_residual_layers),
                   'ratios': [int(r) for r in config.upsampling_ratios], 'activation': 'ELU',
                   'activation_params': {'alpha': 1.0}, 'norm': 'weight_norm', 'norm_params': {},
                   'kernel_size': int(config.kernel_size), 'residual_kernel_size': int(config.residual_kernel_size),
                   'last_kernel_size': int(config.last_kernel_size),
                   'dilation_base': int(config.dilation_growth_rate), 'pad_mode': str(config.pad_mode),
                   'true_skip': not bool(config.use_conv_shortcut), 'compress': int(config.compress),
                   'lstm': int(config.num_lstm_layers), 'disable_norm_outer_blocks': 0,
                   'decoder': {'trim_right_ratio': float(config.trim_right_ratio), 'final_activation': None,
                               'final_activation_params': None},
                   'encoder': {}},
        'rvq': {'n_q': n_q, 'q_dropout': False, 'bins': int(config.codebook_size), 'decay': 0.99,
                'kmeans_init': True, 'kmeans_iters': 50, 'threshold_ema_dead_code': 2,
                'orthogonal_reg_weight': 0.0, 'orthogonal_reg_active_codes_only': False},
        'no_quant': {},
    })


_WN = {'weight_g': 'parametrizations.weight.original0', 'weight_v': 'parametrizations.weight.original1'}


def encodec_state_to_hf(state: tp.Dict[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    """Our SEANet EnCodec state_dict -> transformers EncodecModel state_dict (same tensors)."""
    out = {}
    for key, value in state.items():
        new = key
        match = re.fullmatch(r'(encoder|decoder)\.model\.(\d+)\.(.*)', key)
        quant = re.fullmatch(r'quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)', key)
        if match:
            side, idx, rest = match.groups()
            rest = re.sub(r'^(block\.\d+\.|shortcut\.)?(conv\.conv|convtr\.convtr)\.', r'\1conv.', rest)
            for ours, theirs in _WN.items():
                rest = re.sub(rf'\.{ours}$', f'.{theirs}', rest)
            new = f'{side}.layers.{idx}.{rest}'
        elif quant:
            new = f'quantizer.layers.{quant.group(1)}.codebook.{quant.group(2)}'
        else:
            raise NotConvertibleError(f"codec weight {key!r} has no counterpart in transformers' EncodecModel.")
        out[new] = value
    return out


def encodec_state_from_hf(state: tp.Dict[str, torch.Tensor],
                          reference_keys: tp.Iterable[str]) -> tp.Dict[str, torch.Tensor]:
    """transformers EncodecModel state_dict -> ours, naming each tensor as in `reference_keys` (our model's)."""
    by_hf_name = {}
    for key in reference_keys:
        by_hf_name.update({hf: key for hf in encodec_state_to_hf({key: torch.empty(0)})})
    out = {}
    for key, value in state.items():
        legacy = re.sub(r'\.weight_(g|v)$', lambda m: '.' + _WN['weight_' + m.group(1)], key)
        if legacy not in by_hf_name:
            raise NotConvertibleError(f"transformers EnCodec weight {key!r} has no counterpart in AudioCraft's "
                                      "SEANet EnCodec built from the same configuration.")
        out[by_hf_name[legacy]] = value
    return out
