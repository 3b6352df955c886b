"""Conditioners, provider, fuser, dropout and the conditioning builders.

The golden tests rebuild the condition provider of the reference checkpoints from their
`xp.cfg` alone (no LM) and must reproduce the condition tensors AudioCraft computed.
"""
from pathlib import Path

from omegaconf import OmegaConf
import pytest
import torch

from audiocraft.models.builders import get_condition_fuser, get_conditioner_provider
from audiocraft.modules.conditioners import (
    AttributeDropout, ChromaStemConditioner, ClassifierFreeGuidanceDropout, ConditionFuser,
    ConditioningAttributes, ConditioningProvider, JointEmbedCondition, JointEmbeddingConditioner,
    LUTConditioner, NoopTokenizer, T5Conditioner, WavCondition, WhiteSpaceTokenizer, dropout_condition,
    nullify_condition, nullify_wav)
from audiocraft.modules.embeddings import create_sin_embedding

CONFIGS = Path(__file__).parent.parent / "config" / "conditioner"


def _null_wav(sample_rate: int = 32000) -> WavCondition:
    """What MusicGen puts in `self_wav` when there is no melody."""
    return WavCondition(torch.zeros((1, 1, 1)), torch.tensor([0]), sample_rate=[sample_rate], path=[None])


def _attributes(descriptions, with_wav: bool) -> list:
    attrs = [ConditioningAttributes(text={'description': d}) for d in descriptions]
    if with_wav:
        for attr in attrs:
            attr.wav['self_wav'] = _null_wav()
    return attrs


def _provider_from_case(cases_dir: Path, case: str) -> tuple:
    pkg = torch.load(cases_dir / case / "state_dict.bin", map_location="cpu", weights_only=False)
    cfg = OmegaConf.create(pkg['xp.cfg'])
    cfg.device = 'cpu'
    provider = get_conditioner_provider(cfg.transformer_lm.dim, cfg)
    prefix = 'condition_provider.'
    state = {k[len(prefix):]: v for k, v in pkg['best_state'].items() if k.startswith(prefix)}
    provider.load_state_dict(state, strict=True)
    io = torch.load(cases_dir / case / "io.pt", map_location="cpu", weights_only=False)
    return provider.eval(), cfg, io


@pytest.fixture(scope="module")
def melody_case(cases_dir):
    return _provider_from_case(cases_dir, "musicgen_melody_tiny")


def _check_golden(out: dict, expected: dict) -> None:
    assert set(out) == set(expected)
    for name, (emb, mask) in expected.items():
        assert out[name][0].shape == emb.shape, name
        assert (out[name][0] - emb).abs().max().item() <= 1e-4, name
        assert torch.equal(out[name][1].bool(), mask.bool()), name


def test_golden_text_conditions(cases_dir):
    provider, cfg, io = _provider_from_case(cases_dir, "musicgen_text_tiny")
    # The frozen T5 is not part of the checkpoint: only the projection is.
    assert sorted(provider.state_dict()) == ['conditioners.description.output_proj.bias',
                                             'conditioners.description.output_proj.weight']
    attrs = _attributes(io['descriptions'], with_wav=True)  # extra self_wav is ignored
    with torch.no_grad():
        out = provider(provider.tokenize(attrs))
    _check_golden(out, io['condition_tensors'])
    assert get_condition_fuser(cfg).cond2fuse == {'description': 'cross'}


def test_golden_melody_conditions(melody_case):
    provider, cfg, io = melody_case
    assert 'conditioners.self_wav.chroma.spec.window' in provider.state_dict()
    assert provider.wav_conditions == ['self_wav'] and provider.text_conditions == ['description']
    conditioner = provider.conditioners['self_wav']
    assert isinstance(conditioner, ChromaStemConditioner)
    assert conditioner.chroma_len == 235  # 30 s at 32 kHz, hop 4096
    # Pretrained MusicGen turns this on: chroma tiled to the training length, no masking.
    conditioner.match_len_on_eval = True
    assert conditioner._use_masking is False
    attrs = _attributes(io['descriptions'], with_wav=True)
    with torch.no_grad():
        out = provider(provider.tokenize(attrs))
    _check_golden(out, io['condition_tensors'])
    # Text first, then waveforms: the fuser prepends in this order.
    assert list(out) == ['description', 'self_wav']
    fuser = get_condition_fuser(cfg)
    assert fuser.fuse2cond['prepend'] == ['self_wav', 'description']


class _StubDemucs(torch.nn.Module):
    """Stands in for htdemucs (whose CPU cost is ~10 s a call): each stem is a scaled copy of the mix."""
    sources = ['drums', 'bass', 'other', 'vocals']
    samplerate = 44100
    audio_channels = 2
    segment = 1.

    def forward(self, mix):
        gains = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1)
        return mix[:, None] * gains


def test_melody_chroma_from_stems(melody_case):
    provider, _, io = melody_case
    conditioner = provider.conditioners['self_wav']
    real = conditioner.demucs
    conditioner.__dict__['demucs'] = _StubDemucs()
    try:
        conditioner.match_len_on_eval = False
        melody = io['chroma.melody'][:1]  # [1, 1, 32000]: one second
        # Real demucs.apply.apply_model runs (random shift, splitting) on the stub.
        stems = conditioner._get_stemmed_wav(melody, 32000)
        assert stems.shape == melody.shape
        # vocals (0.4) + other (0.3), resampled to 44.1 kHz stereo and back to 32 kHz mono.
        from demucs.audio import convert_audio
        expected = 0.7 * convert_audio(convert_audio(melody, 32000, 44100, 2), 44100, 32000, 1)
        assert torch.allclose(stems, expected, atol=1e-5)
        cond = WavCondition(melody, torch.tensor([melody.shape[-1]]), [32000], [None])
        with torch.no_grad():
            chroma = conditioner._get_wav_embedding(conditioner.tokenize(cond))
        assert chroma.shape == (1, 32000 // 4096 + 1, 12)
        assert (chroma.sum(-1) == 1).all()  # argmax: one-hot frames
        # The melody is a C4-E4-G4-C5 arpeggio (a quarter second each): pitch classes C, E, G, C.
        assert chroma.argmax(-1).tolist() == [[0, 0, 4, 4, 7, 7, 0, 0]]
        assert torch.equal(chroma, conditioner.chroma(stems))
        conditioner.match_len_on_eval = True
        with torch.no_grad():
            emb, mask = conditioner(conditioner.tokenize(cond))
        assert emb.shape == (1, 235, 64) and mask.shape == (1, 235) and bool(mask.all())
        # Tiling repeats the 8 frames of chroma.
        assert torch.equal(emb[:, 8:16], emb[:, :8])
    finally:
        conditioner.__dict__['demucs'] = real


def test_chroma_cache_reads_chunks_of_whole_file_chroma(tmp_path, melody_case):
    from audiocraft.data.audio import audio_write
    io = melody_case[2]
    conditioner = ChromaStemConditioner(8, 32000, 12, 14, duration=0.5, match_len_on_eval=False,
                                        cache_path=tmp_path / "cache", argmax=True)
    conditioner.__dict__['demucs'] = _StubDemucs()
    path = audio_write(tmp_path / "melody", io['chroma.melody'][0], 32000, strategy='clip')
    full = conditioner._get_full_chroma_for_cache(path, None, 0)
    assert full.shape == (8, 12)
    segment = io['chroma.melody'][:1, :, 16000:]  # the second half, as a dataset would cut it
    cond = WavCondition(segment, torch.tensor([16000]), [32000], [str(path)], [0.5])
    conditioner.tokenize(cond)  # fills the cache
    assert any((tmp_path / "cache").rglob("*"))
    with torch.no_grad():
        chroma = conditioner._get_wav_embedding(cond)
    # 0.5 s at 32000 / 4096 frames per second: 3 frames, read from frame 3 of the whole-file chroma.
    assert torch.equal(chroma, full[3:6][None])
    with pytest.raises(ValueError, match="seek_time"):
        conditioner._extract_chroma_chunk(full, cond._replace(seek_time=[None]), 0)


def test_chroma_null_wav_without_match_len_is_masked(melody_case):
    provider, _, _ = melody_case
    conditioner = provider.conditioners['self_wav']
    conditioner.match_len_on_eval = False
    conditioner._use_masking = True
    with torch.no_grad():
        emb, mask = conditioner(conditioner.tokenize(_null_wav()))
    assert emb.shape == (1, 5, 64)  # one padded window of 16384 samples
    assert mask.sum() == 0 and emb.abs().sum() == 0
    conditioner.match_len_on_eval = True
    with pytest.raises(ValueError, match="sample rates"):
        conditioner(WavCondition(torch.zeros(2, 1, 1), torch.tensor([0, 0]), [32000, 16000], [None, None]))


def test_t5_conditioner_masks_empty_and_stays_out_of_state(reference_dir):
    t5 = T5Conditioner('t5-small', output_dim=8, finetune=False, device='cpu').eval()
    assert t5.dim == 512
    assert sorted(t5.state_dict()) == ['output_proj.bias', 'output_proj.weight']
    tokens = t5.tokenize(['a calm piano', '', None])
    emb, mask = t5(tokens)
    assert emb.shape[:2] == mask.shape and emb.shape[-1] == 8
    assert mask[0].sum() > 0 and mask[1].sum() == 0 and mask[2].sum() == 0
    assert emb[1:].abs().sum() == 0
    finetuned = T5Conditioner('t5-small', output_dim=8, finetune=True, device='cpu')
    assert any(k.startswith('t5.') for k in finetuned.state_dict())


def test_t5_word_dropout_uses_own_generator():
    a = T5Conditioner('t5-small', output_dim=4, finetune=False, word_dropout=0.5).train()
    b = T5Conditioner('t5-small', output_dim=4, finetune=False, word_dropout=0.5).train()
    text = ['one two three four five six seven eight nine ten']
    torch.manual_seed(0)
    first = a.tokenize(text)['input_ids']
    torch.manual_seed(123)
    second = b.tokenize(text)['input_ids']
    assert torch.equal(first, second)
    assert first.shape[1] < a.eval().tokenize(text)['input_ids'].shape[1]


def test_t5_missing_model_error_names_it():
    with pytest.raises(RuntimeError, match="t5-3b"):
        T5Conditioner('t5-3b', output_dim=4, finetune=False)


def test_lut_conditioner_and_tokenizers():
    lut = LUTConditioner(n_bins=32, dim=6, output_dim=4, tokenizer='noop')
    tokens, mask = lut.tokenize(['rock', None, 'jazz'])
    assert tokens.shape == (3, 1) and mask.tolist() == [[1], [0], [1]]
    emb, out_mask = lut((tokens, mask))
    assert emb.shape == (3, 1, 4) and emb[1].abs().sum() == 0
    assert torch.equal(NoopTokenizer(32)(['rock'])[0], NoopTokenizer(32)(['rock'])[0])
    words = WhiteSpaceTokenizer(64, lemma=False, stopwords=False)
    tokens, mask, texts = words(['happy rock, 2 guitars!', None], return_text=True)
    assert texts[0] == 'happy rock two guitars'
    assert mask.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0]]
    assert tokens.shape == (2, 4) and (tokens[1] == 0).all()
    with pytest.raises(ValueError, match="tokenizer"):
        LUTConditioner(n_bins=4, dim=2, output_dim=2, tokenizer='bpe')
    try:
        import spacy  # noqa: F401
    except ImportError:  # lemmas and stop words need spaCy: say so clearly
        with pytest.raises(RuntimeError, match="spaCy"):
            LUTConditioner(n_bins=4, dim=2, output_dim=2, tokenizer='whitespace')


def _lut_provider() -> ConditioningProvider:
    torch.manual_seed(0)
    return ConditioningProvider({
        'genre': LUTConditioner(n_bins=16, dim=4, output_dim=4, tokenizer='noop'),
        'description': LUTConditioner(n_bins=16, dim=4, output_dim=4, tokenizer='noop'),
    })


def test_provider_collates_text_and_wavs(melody_case):
    provider = _lut_provider()
    attrs = [ConditioningAttributes(text={'genre': 'rock', 'description': 'x'}),
             ConditioningAttributes(text={'description': 'y'})]  # genre absent -> None
    out = provider(provider.tokenize(attrs))
    assert list(out) == ['genre', 'description']
    assert out['genre'][1].tolist() == [[1], [0]]
    assert not provider.has_wav_condition
    # Waveform collation: mono mix, right padding, lengths kept.
    wav_provider = melody_case[0]
    stereo = torch.ones(1, 2, 10)
    attrs = [ConditioningAttributes(text={'description': 'a'}, wav={'self_wav': WavCondition(
        stereo, torch.tensor([10]), [32000], ['a.wav'], [1.5])}),
        ConditioningAttributes(text={'description': 'b'}, wav={'self_wav': _null_wav()})]
    wavs = wav_provider._collate_wavs(attrs)['self_wav']
    assert wavs.wav.shape == (2, 1, 10) and wavs.length.tolist() == [10, 0]
    assert wavs.path == ['a.wav', None] and wavs.sample_rate == [32000, 32000]
    assert wavs.wav[1].abs().sum() == 0 and (wavs.wav[0] == 1).all()


class _TextLengthEmbedder(JointEmbeddingConditioner):
    """A joint conditioner whose embedding is the text length: enough to test the plumbing."""

    def _get_embed(self, x):
        lengths = torch.tensor([[float(len(t or ''))] * self.dim for t in x.text])
        return lengths, torch.LongTensor([i for i, t in enumerate(x.text) if not t])


def test_joint_embedding_conditioner_in_provider():
    torch.manual_seed(0)
    joint = _TextLengthEmbedder(dim=3, output_dim=5, device='cpu', attribute='description', quantize=False)
    provider = ConditioningProvider({'description': joint})
    assert provider.joint_embed_conditions == ['description'] and provider.has_joint_embed_conditions

    def attr(text, samples):
        return ConditioningAttributes(joint_embed={'description': JointEmbedCondition(
            torch.ones(1, 2, samples), [text], torch.tensor([samples]), [48000], [None], [0.])})

    tokenized = provider.tokenize([attr('abc', 4), attr(None, 6)])
    batch = tokenized['description']
    assert batch.wav.shape == (2, 1, 6) and batch.text == ['abc', None] and batch.length.tolist() == [4, 6]
    emb, mask = provider(tokenized)['description']
    assert emb.shape == (2, 1, 5) and mask.tolist() == [[1.], [0.]]
    assert torch.allclose(emb[0, 0], joint.output_proj(torch.full((3,), 3.)))
    assert emb[1].abs().sum() == 0
    null = ClassifierFreeGuidanceDropout(p=1.0)([attr('abc', 4)])[0]
    assert null.joint_embed['description'].text == ['abc']  # CFG dropout leaves joint embeddings alone
    dropped = dropout_condition(attr('abc', 4), 'joint_embed', 'description').joint_embed['description']
    assert dropped.text == [None] and dropped.wav.shape == (1, 2, 1)


def test_provider_errors(melody_case):
    provider = melody_case[0]
    with pytest.raises(ValueError, match="self_wav"):
        provider.tokenize([ConditioningAttributes(text={'description': 'a'})])
    bad = ConditioningAttributes(text={'description': 'a'},
                                 wav={'self_wav': WavCondition(torch.zeros(2, 5), torch.tensor([5]), [32000])})
    with pytest.raises(ValueError, match=r"\[1, C, T\]"):
        provider.tokenize([bad])
    with pytest.raises(TypeError):
        provider.tokenize(['not attributes'])


def test_conditioning_attributes_flat_dict():
    wav = _null_wav()
    attrs = ConditioningAttributes(text={'description': 'a'}, wav={'self_wav': wav})
    flat = attrs.to_flat_dict()
    assert flat == {'text.description': 'a', 'wav.self_wav': wav}
    back = ConditioningAttributes.from_flat_dict(flat)
    assert back.text == attrs.text and back.wav['self_wav'] is wav
    assert list(back.attributes['text']) == ['description'] and list(back.wav_attributes) == ['self_wav']
    assert attrs['text'] is attrs.text
    with pytest.raises(ValueError, match="flat attribute key"):
        ConditioningAttributes.from_flat_dict({'description': 'a'})


def test_nullify():
    cond = torch.randn(3, 7, 4)
    out, mask = nullify_condition((cond, torch.ones(3, 7)), dim=1)
    assert out.shape == (3, 1, 4) and out.abs().sum() == 0 and mask.tolist() == [[0]] * 3
    with pytest.raises(ValueError):
        nullify_condition((cond, torch.ones(3, 7)), dim=0)
    null = nullify_wav(WavCondition(torch.randn(2, 1, 100), torch.tensor([100, 80]), [16000, 16000], ['a', 'b']))
    assert null.wav.shape == (2, 1, 1) and null.wav.abs().sum() == 0
    assert null.length.tolist() == [0, 0] and null.path == [None, None] and null.sample_rate == [16000, 16000]


def _melody_attrs() -> list:
    wav = WavCondition(torch.randn(1, 1, 50), torch.tensor([50]), [32000], ['m.wav'])
    return [ConditioningAttributes(text={'description': 'a', 'genre': 'rock'}, wav={'self_wav': wav})]


def test_attribute_dropout():
    dropout = AttributeDropout({'args': {'active_on_eval': False}, 'text': {'genre': 1.0},
                                'wav': {'self_wav': 1.0}})
    samples = _melody_attrs()
    out = dropout(samples)
    assert out[0].text == {'description': 'a', 'genre': None}
    assert out[0].wav['self_wav'].wav.shape == (1, 1, 1) and out[0].wav['self_wav'].length.tolist() == [0]
    assert samples[0].text['genre'] == 'rock'  # inputs are not modified
    assert dropout.eval()(samples) is samples
    assert AttributeDropout({'args': {'active_on_eval': True}, 'text': {'genre': 1.0}}).eval()(
        samples)[0].text['genre'] is None
    with pytest.raises(ValueError, match="condition type"):
        AttributeDropout({'audio': {'x': 0.5}})


def test_dropout_uses_own_generator():
    decisions = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        dropout = ClassifierFreeGuidanceDropout(p=0.5, seed=7)
        decisions.append([dropout(_melody_attrs())[0].text['description'] is None for _ in range(20)])
    assert decisions[0] == decisions[1]
    assert any(decisions[0]) and not all(decisions[0])
    samples = _melody_attrs()
    state = torch.get_rng_state()
    ClassifierFreeGuidanceDropout(p=0.5).train()(samples)
    AttributeDropout({'text': {'genre': 0.5}})(samples)
    assert torch.equal(state, torch.get_rng_state())


def test_cfg_dropout_nulls_everything():
    samples = _melody_attrs()
    null = ClassifierFreeGuidanceDropout(p=1.0)(samples)
    assert null[0].text == {'description': None, 'genre': None}
    assert null[0].wav['self_wav'].wav.abs().sum() == 0 and null[0].wav['self_wav'].wav.shape[-1] == 1
    assert ClassifierFreeGuidanceDropout(p=1.0).eval()(samples) is samples
    with pytest.raises(ValueError):
        ClassifierFreeGuidanceDropout(p=1.5)
    with pytest.raises(ValueError, match="unknown text condition"):
        dropout_condition(samples[0], 'text', 'mood')
    with pytest.raises(ValueError, match="condition_type"):
        dropout_condition(samples[0], 'image', 'x')


def test_fuser_methods_and_order():
    fuser = ConditionFuser({'sum': ['s'], 'prepend': ['p1', 'p2'], 'cross': ['c1', 'c2'],
                            'input_interpolate': ['i']})
    x = torch.zeros(2, 4, 3)
    ones = torch.ones(2, 1, 3)
    conds = {
        's': (torch.full((2, 4, 3), 2.), None),
        'i': (torch.arange(2.).view(1, 2, 1).expand(2, 2, 3), None),  # nearest upsampled to 4
        'p1': (ones, None), 'p2': (2 * ones, None),
        'c1': (torch.zeros(2, 5, 3), None), 'c2': (torch.ones(2, 2, 3), None),
    }
    out, cross = fuser(x, conds)
    assert out.shape == (2, 6, 3)
    # Visit order decides prepend order: p2 (visited last) ends up first.
    assert out[0, 0, 0] == 2 and out[0, 1, 0] == 1
    assert out[0, 2:, 0].tolist() == [2., 2., 3., 3.]
    assert cross.shape == (2, 7, 3) and cross[:, 5:].eq(1).all()
    assert x.abs().sum() == 0  # no in-place change of the input


def test_fuser_cross_pos_emb_and_streaming():
    fuser = ConditionFuser({'cross': ['c'], 'prepend': ['p']}, cross_attention_pos_emb=True,
                           cross_attention_pos_emb_scale=0.5)
    cond = torch.zeros(1, 3, 4)
    _, cross = fuser(torch.zeros(1, 2, 4), {'c': (cond, None)})
    expected = 0.5 * create_sin_embedding(torch.arange(3).view(1, -1, 1), 4)
    assert torch.allclose(cross, expected)
    # dim 4: periods 1 and 10000; cosines then sines.
    phase = torch.tensor([1., 1e-4])
    assert torch.allclose(expected[0, 1], 0.5 * torch.cat([phase.cos(), phase.sin()]), atol=1e-6)
    prepend = {'p': (torch.ones(1, 2, 4), None)}
    with fuser.streaming():
        first, _ = fuser(torch.zeros(1, 1, 4), prepend)
        second, _ = fuser(torch.zeros(1, 1, 4), prepend)
    assert first.shape[1] == 3 and second.shape[1] == 1
    assert fuser(torch.zeros(1, 1, 4), prepend)[0].shape[1] == 3  # state cleared after streaming


def test_fuser_errors():
    with pytest.raises(ValueError, match="fusing methods"):
        ConditionFuser({'concat': ['a']})
    with pytest.raises(ValueError, match="fused twice"):
        ConditionFuser({'sum': ['a'], 'cross': ['a']})
    with pytest.raises(ValueError, match="no fusing method"):
        ConditionFuser({'sum': ['a']})(torch.zeros(1, 1, 1), {'b': (torch.zeros(1, 1, 1), None)})
    with pytest.raises(ValueError, match="even"):
        create_sin_embedding(torch.zeros(1, 1, 1), 3)


def _conditioner_cfg(name: str) -> OmegaConf:
    base = OmegaConf.create({'device': 'cpu', 'sample_rate': 32000, 'dataset': {'segment_duration': 10}})
    return OmegaConf.merge(base, OmegaConf.load(CONFIGS / f"{name}.yaml"))


def test_conditioner_configs_build():
    cfg = _conditioner_cfg('none')
    provider = get_conditioner_provider(16, cfg)
    assert len(provider.conditioners) == 0 and get_condition_fuser(cfg).cond2fuse == {}
    cfg = _conditioner_cfg('text2sound')
    provider = get_conditioner_provider(16, cfg)
    assert provider.conditioners['description'].dim == 1024  # t5-large
    assert get_condition_fuser(cfg).cond2fuse == {'description': 'cross'}
    cfg = _conditioner_cfg('chroma2music')
    assert cfg.conditioners.self_wav.chroma_stem.sample_rate == 32000
    fuser = get_condition_fuser(cfg)
    assert fuser.cond2fuse == {'self_wav': 'prepend', 'description': 'prepend'}
    for name in ('text2music', 'clapemb2music'):
        assert 'description' in _conditioner_cfg(name).conditioners


def test_builder_errors():
    cfg = OmegaConf.create({'device': 'cpu', 'conditioners': {'x': {'model': 'bert', 'bert': {}}}})
    with pytest.raises(ValueError, match="bert"):
        get_conditioner_provider(8, cfg)
    cfg = OmegaConf.create({'device': 'cpu', 'conditioners': {'x': {'lut': {}}}})
    with pytest.raises(ValueError, match="model"):
        get_conditioner_provider(8, cfg)
    # CLAP needs its checkpoint (not laion_clap): a clear error when it is missing.
    cfg = _conditioner_cfg('clapemb2music')
    with pytest.raises(FileNotFoundError, match="CLAP checkpoint"):
        get_conditioner_provider(8, cfg)
    cfg = OmegaConf.create({'device': 'cpu', 'conditioners': {
        'genre': {'model': 'lut', 'lut': {'n_bins': 8, 'dim': 4, 'tokenizer': 'noop'}}},
        'fuser': {'sum': [], 'cross': ['genre'], 'prepend': [], 'input_interpolate': []}})
    provider = get_conditioner_provider(8, cfg)
    assert provider.text_conditions == ['genre']
    assert sorted(provider.state_dict()) == ['conditioners.genre.embed.weight',
                                             'conditioners.genre.output_proj.bias',
                                             'conditioners.genre.output_proj.weight']
