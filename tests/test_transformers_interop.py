"""Both ways with Hugging Face transformers' MusicGen: equal greedy CFG tokens, bit-identical round trips.

transformers models are built from their config classes (tiny T5 from tests/reference/hf_cache,
tiny decoder, tiny EnCodec): nothing is downloaded.
"""
import typing as tp
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip('transformers')

from audiocraft.models import MusicGen  # noqa: E402
from audiocraft.models.hf_interop import (NotConvertibleError, convert_transformers_to_audiocraft,  # noqa: E402
                                          export_musicgen_to_transformers)
from audiocraft.models.hf_interop.lm_map import check_lm_cfg  # noqa: E402

pytestmark = pytest.mark.usefixtures('single_thread')

PROMPT = ['happy rock song']
FRAMES = 12  # generated frames
LEVELS = 4  # codebook levels per channel (the delays 0..3)


def build_transformers_musicgen(folder: Path, stereo: bool = False, melody: bool = False, seed: int = 0):
    """A tiny random transformers MusicGen saved in `folder` (weights, config, generation config, tokenizer)."""
    torch.manual_seed(seed)
    t5 = transformers.T5EncoderModel.from_pretrained('t5-base')  # the tiny offline stand-in
    tokenizer = transformers.T5Tokenizer.from_pretrained('t5-base')
    encodec = transformers.EncodecConfig(
        sampling_rate=32000, audio_channels=1, hidden_size=16, num_filters=4, upsampling_ratios=[8, 5, 4, 4],
        num_lstm_layers=1, codebook_size=64, target_bandwidths=[1.2], use_causal_conv=False,
        use_conv_shortcut=False, pad_mode='reflect', normalize=False)
    decoder_class = transformers.MusicgenMelodyDecoderConfig if melody else transformers.MusicgenDecoderConfig
    decoder = decoder_class(vocab_size=64, hidden_size=32, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                            num_codebooks=2 * LEVELS if stereo else LEVELS, audio_channels=2 if stereo else 1,
                            pad_token_id=64, bos_token_id=64, dropout=0.0)
    parts = dict(text_encoder=t5.config.to_dict(), audio_encoder=encodec.to_dict(), decoder=decoder.to_dict())
    if melody:
        model = transformers.MusicgenMelodyForConditionalGeneration(transformers.MusicgenMelodyConfig(**parts))
    else:
        model = transformers.MusicgenForConditionalGeneration(transformers.MusicgenConfig(**parts))
    model.text_encoder.load_state_dict(t5.state_dict())
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:  # transformers initialises codebooks to zero
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
        for name, param in model.decoder.named_parameters():  # larger weights: non-trivial token sequences
            if 'layer_norm' in name:
                param.add_(0.1 * torch.randn_like(param))
            else:
                param.normal_(0, 0.2)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=64, pad_token_id=64, bos_token_id=64, do_sample=True, guidance_scale=3.0,
        max_length=1500, top_k=250)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return model.eval(), tokenizer


def transformers_tokens(model: tp.Any, tokenizer: tp.Any, **kwargs: tp.Any) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Greedy CFG generation with transformers: (tokens [B, K, T] in AudioCraft's stereo layout, audio)."""
    decoded: tp.List[torch.Tensor] = []
    decode = model.audio_encoder.decode

    def capture(codes: torch.Tensor, *args: tp.Any, **kw: tp.Any) -> tp.Any:
        decoded.append(codes[0])
        return decode(codes, *args, **kw)

    model.audio_encoder.decode = capture
    try:
        inputs = tokenizer(PROMPT, return_tensors='pt', padding=True)
        with torch.no_grad():
            audio = model.generate(**inputs, do_sample=False, guidance_scale=3.0,
                                   max_new_tokens=FRAMES + LEVELS - 1, **kwargs)
    finally:
        model.audio_encoder.decode = decode
    # Stereo: transformers decodes left (even codebooks) then right (odd); AudioCraft interleaves them.
    tokens = decoded[0] if len(decoded) == 1 else torch.stack(decoded, dim=2).flatten(1, 2)
    return tokens, audio


def ours_greedy(model: MusicGen, melody: tp.Optional[torch.Tensor] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    model.set_generation_params(use_sampling=False, cfg_coef=3.0, duration=FRAMES / model.frame_rate)
    if melody is not None:
        wav, tokens = model.generate_with_chroma(PROMPT, melody, model.sample_rate, return_tokens=True)
    else:
        wav, tokens = model.generate(PROMPT, return_tokens=True)
    return tokens, wav


# ---- transformers -> AudioCraft ----


@pytest.mark.parametrize('stereo', [False, True], ids=['mono', 'stereo'])
def test_transformers_folder_generates_the_same_tokens(tmp_path, stereo, caplog):
    hf_model, tokenizer = build_transformers_musicgen(tmp_path / 'hf', stereo=stereo)
    with caplog.at_level('INFO'):
        ours = MusicGen.get_pretrained(str(tmp_path / 'hf'), device='cpu')
    # generation_config.json -> set_generation_params, with a log line saying so.
    assert 'generation_config.json' in caplog.text
    assert ours.generation_params['use_sampling'] is True and ours.generation_params['top_k'] == 250
    assert ours.generation_params['cfg_coef'] == 3.0
    assert ours.audio_channels == (2 if stereo else 1)
    tokens, wav = ours_greedy(ours)
    hf_tokens, hf_audio = transformers_tokens(hf_model, tokenizer)
    assert tokens.shape == (1, 2 * LEVELS if stereo else LEVELS, FRAMES)
    assert torch.equal(tokens, hf_tokens)
    assert wav.shape == hf_audio.shape
    assert (wav - hf_audio).abs().max() < 1e-4


def test_transformers_melody_folder_generates_the_same_tokens(tmp_path):
    from audiocraft.modules.conditioners import WavCondition
    hf_model, tokenizer = build_transformers_musicgen(tmp_path / 'hf', melody=True)
    ours = MusicGen.get_pretrained(str(tmp_path / 'hf'), device='cpu')
    tokens, wav = ours_greedy(ours)  # text only: both use the one-hot "no melody" chroma
    hf_tokens, hf_audio = transformers_tokens(hf_model, tokenizer)
    assert torch.equal(tokens, hf_tokens)
    assert (wav - hf_audio).abs().max() < 1e-4
    # transformers takes chroma features; give it the ones our conditioner extracts (demucs stems).
    melody = torch.randn(1, 1, ours.sample_rate, generator=torch.Generator().manual_seed(1))
    tokens, wav = ours_greedy(ours, melody)
    conditioner = ours.lm.condition_provider.conditioners['self_wav']
    chroma = conditioner._get_wav_embedding(WavCondition(melody, torch.tensor([melody.shape[-1]]),
                                                         [ours.sample_rate], [None], [0.]))
    hf_tokens, hf_audio = transformers_tokens(hf_model, tokenizer, input_features=chroma)
    assert torch.equal(tokens, hf_tokens)
    assert (wav - hf_audio).abs().max() < 1e-4


def test_transformers_to_audiocraft_files_load_and_match(tmp_path):
    build_transformers_musicgen(tmp_path / 'hf')
    in_memory = MusicGen.get_pretrained(str(tmp_path / 'hf'), device='cpu')
    convert_transformers_to_audiocraft(str(tmp_path / 'hf'), tmp_path / 'ac')
    pkg = torch.load(tmp_path / 'ac' / 'state_dict.bin', weights_only=True)
    assert set(pkg) == {'best_state', 'xp.cfg', 'version', 'exported'} and pkg['exported'] is True
    # The checkpoint's own T5 weights travel in state_dict.bin (finetune: true).
    assert any('.t5.' in key for key in pkg['best_state'])
    codec = torch.load(tmp_path / 'ac' / 'compression_state_dict.bin', weights_only=True)
    assert set(codec) == {'best_state', 'xp.cfg', 'version', 'exported'}
    loaded = MusicGen.get_pretrained(str(tmp_path / 'ac'), device='cpu')
    tokens, wav = ours_greedy(in_memory)
    tokens2, wav2 = ours_greedy(loaded)
    assert torch.equal(tokens, tokens2)
    assert (wav - wav2).abs().max() < 1e-4


# ---- AudioCraft -> transformers ----


def make_stereo_case(cases_dir: Path, folder: Path) -> Path:
    """musicgen_text_tiny made stereo: 8 codebooks, delays [0, 0, 1, 1, ...], codes interleaved per codebook."""
    from omegaconf import OmegaConf
    pkg = torch.load(cases_dir / 'musicgen_text_tiny' / 'state_dict.bin', weights_only=True)
    cfg = OmegaConf.create(pkg['xp.cfg'])
    cfg.channels = 2
    cfg.interleave_stereo_codebooks.use = True
    cfg.transformer_lm.n_q = 2 * LEVELS
    cfg.codebooks_pattern.delay.delays = [k // 2 for k in range(2 * LEVELS)]
    gen = torch.Generator().manual_seed(3)
    state = {}
    for key, value in pkg['best_state'].items():  # new tensors where AudioCraft's state_dict lists them
        state[key] = value
        if key in (f'emb.{LEVELS - 1}.weight', f'linears.{LEVELS - 1}.weight'):
            kind = key.split('.')[0]
            scale = 0.1 if kind == 'linears' else 1.0
            for k in range(LEVELS, 2 * LEVELS):
                state[f'{kind}.{k}.weight'] = torch.randn(value.shape, generator=gen) * scale
    folder.mkdir(parents=True)
    torch.save({**pkg, 'best_state': state, 'xp.cfg': OmegaConf.to_yaml(cfg)}, folder / 'state_dict.bin')
    (folder / 'compression_state_dict.bin').write_bytes(
        (cases_dir / 'musicgen_text_tiny' / 'compression_state_dict.bin').read_bytes())
    return folder


def _case_folder(cases_dir: Path, tmp_path: Path, case: str) -> Path:
    if case == 'musicgen_stereo_tiny':
        return make_stereo_case(cases_dir, tmp_path / case)
    return cases_dir / case


@pytest.mark.parametrize('case', ['musicgen_text_tiny', 'musicgen_melody_tiny', 'musicgen_stereo_tiny'])
def test_export_to_transformers_same_tokens_and_bit_identical_round_trip(cases_dir, tmp_path, case):
    src = _case_folder(cases_dir, tmp_path, case)
    dst = tmp_path / 'hf'
    export_musicgen_to_transformers(str(src), dst)
    assert (dst / 'model.safetensors').is_file() and (dst / 'generation_config.json').is_file()
    klass = (transformers.MusicgenMelodyForConditionalGeneration if 'melody' in case
             else transformers.MusicgenForConditionalGeneration)
    hf_model = klass.from_pretrained(str(dst)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(dst))
    ours = MusicGen.get_pretrained(str(src), device='cpu')
    tokens, wav = ours_greedy(ours)
    hf_tokens, hf_audio = transformers_tokens(hf_model, tokenizer)
    assert torch.equal(tokens, hf_tokens)
    assert (wav - hf_audio).abs().max() < 1e-4
    # ours -> transformers -> ours, in memory: the same LM state_dict, bit for bit.
    back = MusicGen.get_pretrained(str(dst), device='cpu')
    original, converted = ours.lm.state_dict(), back.lm.state_dict()
    assert list(original) == list(converted)
    for key, value in original.items():
        assert converted[key].dtype == value.dtype and torch.equal(converted[key], value), key
    # ... and through files (T5 loaded by name, as in the original): both checkpoints bit-identical.
    convert_transformers_to_audiocraft(str(dst), tmp_path / 'ac', embed_text_encoder=False)
    for filename in ('state_dict.bin', 'compression_state_dict.bin'):
        before = torch.load(src / filename, weights_only=True)['best_state']
        after = torch.load(tmp_path / 'ac' / filename, weights_only=True)['best_state']
        assert list(before) == list(after), filename
        for key, value in before.items():
            assert after[key].dtype == value.dtype and torch.equal(after[key], value), (filename, key)


def test_cli_convert_both_ways(cases_dir, tmp_path, capsys):
    from audiocraft.__main__ import main
    src = cases_dir / 'musicgen_text_tiny'
    assert main(['convert', '--to', 'transformers', str(src), str(tmp_path / 'hf')]) == 0
    assert transformers.MusicgenForConditionalGeneration.from_pretrained(str(tmp_path / 'hf')) is not None
    assert main(['convert', '--to', 'audiocraft', str(tmp_path / 'hf'), str(tmp_path / 'ac')]) == 0
    out = capsys.readouterr().out.split()
    assert str(tmp_path / 'hf') in out and str(tmp_path / 'ac') in out
    assert MusicGen.get_pretrained(str(tmp_path / 'ac'), device='cpu').lm.num_codebooks == LEVELS


# ---- refusals ----


def test_magnet_is_refused_with_the_reason(cases_dir, tmp_path, capsys):
    from audiocraft.__main__ import main
    with pytest.raises(NotConvertibleError, match='MAGNeT'):
        export_musicgen_to_transformers(str(cases_dir / 'magnet_tiny'), tmp_path / 'hf')
    assert main(['convert', '--to', 'transformers', str(cases_dir / 'magnet_tiny'), str(tmp_path / 'x')]) == 2
    assert 'MAGNeT' in capsys.readouterr().err
    assert not (tmp_path / 'hf').exists()


@pytest.mark.parametrize('key, value, reason', [
    ('transformer_lm.positional_embedding', 'rope', 'positional_embedding'),
    ('transformer_lm.bias_attn', True, 'bias_attn'),
    ('codebooks_pattern.delay.delays', [0, 2, 3, 5], 'delay pattern'),
    ('codebooks_pattern.modeling', 'parallel', 'delay pattern'),
    ('fuser.cross', [], 'fuser'),
])
def test_lm_configs_without_transformers_counterpart_are_refused(cases_dir, key, value, reason):
    from omegaconf import OmegaConf
    cfg = OmegaConf.create(torch.load(cases_dir / 'musicgen_text_tiny' / 'state_dict.bin',
                                      weights_only=True)['xp.cfg'])
    assert check_lm_cfg(cfg) == 'text'
    OmegaConf.update(cfg, key, value)
    with pytest.raises(NotConvertibleError, match=reason):
        check_lm_cfg(cfg)


@pytest.mark.parametrize('key, value, reason', [
    ('seanet.lstm', 0, 'LSTM'),
    ('seanet.norm', 'time_group_norm', 'norm'),
    ('seanet.activation', 'GELU', 'activation'),
    ('rvq.bins', 100, 'power of 2'),
])
def test_codecs_without_transformers_counterpart_are_refused(cases_dir, key, value, reason):
    from omegaconf import OmegaConf
    from audiocraft.models.hf_interop.encodec_map import hf_encodec_config_from_cfg
    cfg = OmegaConf.create(torch.load(cases_dir / 'musicgen_text_tiny' / 'compression_state_dict.bin',
                                      weights_only=True)['xp.cfg'])
    assert hf_encodec_config_from_cfg(cfg).num_quantizers == 4
    OmegaConf.update(cfg, key, value)
    with pytest.raises(NotConvertibleError, match=reason):
        hf_encodec_config_from_cfg(cfg)


# ---- numeric conventions (docs/TRANSFORMERS.md) ----


def test_sinusoidal_embedding_layout_matches():
    from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding
    from audiocraft.modules.embeddings import create_sin_embedding
    positions = torch.arange(3000).view(1, -1, 1)
    ours = create_sin_embedding(positions, 64)[0]
    theirs = MusicgenSinusoidalPositionalEmbedding.get_embedding(3000, 64)
    # Same layout (cosines then sines, period 10000 ** (i / (dim / 2 - 1))); exp/log vs pow rounding only.
    assert (ours - theirs).abs().max() < 1e-3
    assert (ours[:100] - theirs[:100]).abs().max() < 1e-5


@pytest.mark.parametrize('stereo', [False, True], ids=['mono', 'stereo'])
def test_delay_pattern_matches_transformers_delay_mask(stereo):
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
    from audiocraft.models.hf_interop.lm_map import stereo_delays
    n_q, frames, special = (2 * LEVELS if stereo else LEVELS), 7, 64
    config = transformers.MusicgenDecoderConfig(vocab_size=64, hidden_size=8, ffn_dim=16, num_hidden_layers=1,
                                                num_attention_heads=2, num_codebooks=n_q,
                                                audio_channels=2 if stereo else 1, pad_token_id=special)
    decoder = transformers.MusicgenForCausalLM(config)
    codes = torch.randint(0, 64, (1, n_q, frames))
    ours, _, _ = DelayedPatternProvider(n_q, delays=stereo_delays(n_q, stereo)).get_pattern(frames) \
        .build_pattern_sequence(codes, special)
    with_start = torch.cat([torch.full((1, n_q, 1), special), codes], dim=-1).reshape(n_q, -1)
    _, theirs = decoder.build_delay_pattern_mask(with_start, special, max_length=frames + LEVELS)
    # Step s holds frame s - 1 - delay[k] of codebook k; the start step and the delay gaps are special.
    assert torch.equal(ours[0], theirs)


def test_cfg_combines_logits_like_transformers():
    from transformers.generation import ClassifierFreeGuidanceLogitsProcessor
    cond, uncond = torch.randn(2, 4, 64), torch.randn(2, 4, 64)
    batched = torch.cat([cond, uncond]).reshape(-1, 64)  # conditional half first, as both libraries batch
    ids = torch.zeros(2 * 4, 1, dtype=torch.long)  # rows of the conditional half (batch x codebooks)
    theirs = ClassifierFreeGuidanceLogitsProcessor(3.0)(ids, batched).reshape(2, 4, 64)
    ours = uncond + (cond - uncond) * 3.0  # LMModel's CFG on raw logits
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_padded_prompts_follow_audiocraft_cross_attention(tmp_path):
    """transformers masks T5 padding in cross-attention, AudioCraft attends to the (zero) padded states:
    a prompt generated alone gives transformers' tokens for it in any batch; batched with a longer
    prompt, AudioCraft's result for the short one follows AudioCraft's convention (docs/TRANSFORMERS.md)."""
    hf_model, tokenizer = build_transformers_musicgen(tmp_path / 'hf')
    ours = MusicGen.get_pretrained(str(tmp_path / 'hf'), device='cpu')
    prompts = ['happy rock song', 'a very long and sad jazz ballad with piano and strings']
    ours.set_generation_params(use_sampling=False, cfg_coef=3.0, duration=FRAMES / ours.frame_rate)
    decoded: tp.List[torch.Tensor] = []
    decode = hf_model.audio_encoder.decode
    hf_model.audio_encoder.decode = lambda codes, *a, **k: (decoded.append(codes[0]), decode(codes, *a, **k))[1]
    with torch.no_grad():
        hf_model.generate(**tokenizer(prompts, return_tensors='pt', padding=True), do_sample=False,
                          guidance_scale=3.0, max_new_tokens=FRAMES + LEVELS - 1)
    for index, prompt in enumerate(prompts):
        _, alone = ours.generate([prompt], return_tokens=True)
        assert torch.equal(alone[0], decoded[0][index])


def test_export_from_a_solver_checkpoint(cases_dir, tmp_path):
    """A `dora run solver=musicgen/...` checkpoint (best_state + xp.cfg, codec checkpoint by path) exports too."""
    from omegaconf import OmegaConf
    case = cases_dir / 'musicgen_text_tiny'
    codec = torch.load(case / 'compression_state_dict.bin', weights_only=True)
    torch.save({'xp.cfg': codec['xp.cfg'], 'best_state': {'model': codec['best_state']}}, tmp_path / 'codec.th')
    lm = torch.load(case / 'state_dict.bin', weights_only=True)
    cfg = OmegaConf.create(lm['xp.cfg'])
    cfg.compression_model_checkpoint = str(tmp_path / 'codec.th')
    torch.save({'xp.cfg': OmegaConf.to_yaml(cfg), 'best_state': {'model': lm['best_state']}}, tmp_path / 'lm.th')
    from audiocraft.utils.export import export_to_transformers
    export_to_transformers(tmp_path / 'lm.th', tmp_path / 'hf')
    hf_model = transformers.MusicgenForConditionalGeneration.from_pretrained(str(tmp_path / 'hf'))
    assert torch.equal(hf_model.decoder.lm_heads[0].weight, lm['best_state']['linears.0.weight'])
