"""LAION-CLAP in plain torch: front end, checkpoint loading, text consistency metric, CLI, conditioner.

The text branch is the tiny random `roberta-base` stand-in of tests/reference/hf_cache; the audio
branch a small HTS-AT registered as 'HTSAT-test' for each test.
"""
import json
import math
import types

import pytest
import torch

from audiocraft.data.audio import audio_write
from audiocraft.metrics import CLAPTextConsistencyMetric, cli
from audiocraft.modules.clap import CLAP, CLAPModule, HTSATConfig, crop_or_repeat_pad, load_clap_module
from audiocraft.modules.clap import model as clap_model

SR = 16000
TINY = HTSATConfig(sample_rate=SR, clip_samples=SR, window_size=512, hop_size=256, mel_bins=16, fmin=50.,
                   fmax=8000., spec_size=64, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), swin_window=4,
                   num_classes=10)
# Synthetic text-audio pairs the stand-in is trained on.
CAPTIONS = ["a low sine tone", "a high sine tone", "white noise hiss", "a buzzing square wave"]


def _sound(index: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(SR) / SR
    phase = torch.rand(1, generator=gen) * 2 * math.pi
    if index == 0:
        wav = torch.sin(2 * math.pi * 200 * t + phase)
    elif index == 1:
        wav = torch.sin(2 * math.pi * 3000 * t + phase)
    elif index == 2:
        wav = torch.randn(SR, generator=gen)
    else:
        wav = torch.sign(torch.sin(2 * math.pi * 400 * t + phase))
    return 0.3 * wav * (0.7 + 0.6 * torch.rand(1, generator=gen))


def _text_config():
    from transformers import RobertaConfig
    return RobertaConfig.from_pretrained('roberta-base')


def save_laion_checkpoint(model: CLAP, path) -> None:
    """`model` saved as laion_clap's training saves it: DDP `module.` prefix, optimizer state,
    and the `position_ids` buffer older transformers kept."""
    state = {f'module.{key}': value for key, value in model.state_dict().items()}
    state['module.text_branch.embeddings.position_ids'] = torch.arange(80)[None]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    torch.save({'epoch': 3, 'name': 'test', 'state_dict': state, 'optimizer': optimizer.state_dict()}, path)


@pytest.fixture(autouse=True)
def tiny_arch(monkeypatch):
    monkeypatch.setattr(clap_model, 'HTSAT_PRESETS',
                        types.MappingProxyType({**clap_model.HTSAT_PRESETS, 'HTSAT-test': TINY}))


@pytest.fixture(scope='module')
def trained_checkpoint(tmp_path_factory):
    """A stand-in CLAP trained for a few steps (CLIP loss) to pair CAPTIONS with their sounds."""
    from transformers import RobertaTokenizer
    torch.manual_seed(0)
    model = CLAP(TINY, _text_config()).eval()  # eval: no dropout, fixed batch norm statistics
    with torch.no_grad():
        # At the stand-in's init (std 0.02) every caption pools to nearly the same vector, and raw
        # dB log-mels to nearly the same audio vector: start from distinct features, as a trained CLAP has.
        for param in model.text_branch.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.2)
        branch = model.audio_branch
        mel = branch.logmel_extractor(branch.spectrogram_extractor(torch.stack([_sound(i) for i in range(4)])))
        branch.bn0.running_mean.fill_(mel.mean().item())
        branch.bn0.running_var.fill_(mel.var().item())
    module = CLAPModule(model, RobertaTokenizer.from_pretrained('roberta-base'))
    tokens = module.tokenize(CAPTIONS)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    labels = torch.arange(len(CAPTIONS))
    for step in range(40):
        audio = model.get_audio_embedding(torch.stack([_sound(i, seed=step) for i in range(len(CAPTIONS))]))
        logits = model.logit_scale_a.exp() * audio @ model.get_text_embedding(tokens).T
        loss = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp('clap') / 'clap_trained.pt'
    save_laion_checkpoint(model, path)
    return path


def test_front_end_is_a_power_mel_spectrogram():
    from audiocraft.modules.clap import HTSAT
    htsat = HTSAT(TINY).eval()
    wav = torch.randn(2, SR)
    spec = htsat.spectrogram_extractor(wav)
    window = torch.hann_window(TINY.window_size)
    reference = torch.stft(wav, TINY.window_size, TINY.hop_size, window=window, center=True, pad_mode='reflect',
                           return_complex=True).abs().pow(2).transpose(1, 2)[:, None]
    assert spec.shape == reference.shape == (2, 1, SR // TINY.hop_size + 1, TINY.window_size // 2 + 1)
    torch.testing.assert_close(spec, reference, rtol=1e-3, atol=1e-3)
    mel = htsat.logmel_extractor.melW
    assert mel.shape == (TINY.window_size // 2 + 1, TINY.mel_bins) and (mel.sum(0) > 0).all()
    log_mel = htsat.log_mel(wav)
    assert log_mel.shape == (2, 1, SR // TINY.hop_size + 1, TINY.mel_bins)
    assert htsat(wav).shape == (2, TINY.num_features)
    with pytest.raises(ValueError, match="clip_samples"):
        htsat(torch.randn(1, 5 * SR))


def test_crop_or_repeat_pad_as_laion_clap():
    wav = torch.arange(1., 4.)
    torch.testing.assert_close(crop_or_repeat_pad(wav, 8), torch.tensor([1., 2., 3., 1., 2., 3., 0., 0.]))
    assert crop_or_repeat_pad(wav, 3) is wav
    long = torch.arange(100.)
    crops = [crop_or_repeat_pad(long, 10, torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(crops[0], crops[1])
    start = int(crops[0][0])
    torch.testing.assert_close(crops[0], torch.arange(start, start + 10.))
    with pytest.raises(ValueError, match="empty"):
        crop_or_repeat_pad(torch.zeros(0), 10)


def test_laion_checkpoint_loads_through_safe_loader(tmp_path):
    torch.manual_seed(1)
    model = CLAP(TINY, _text_config()).eval()
    save_laion_checkpoint(model, tmp_path / 'clap.pt')
    loaded = load_clap_module(tmp_path / 'clap.pt', model_arch='HTSAT-test')
    assert not loaded.training and loaded.sample_rate == SR
    expected = model.state_dict()
    assert set(loaded.model.state_dict()) == set(expected)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    wav = torch.randn(2, SR)
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_audio_embedding_from_data(wav), model.get_audio_embedding(wav))
        emb = loaded.get_text_embedding(CAPTIONS[:2])
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    # laion_clap's call conventions: numpy in and out with use_tensor=False, a tokenizer callable.
    as_numpy = loaded.get_audio_embedding_from_data(wav.numpy(), use_tensor=False)
    torch.testing.assert_close(torch.from_numpy(as_numpy), model.get_audio_embedding(wav).detach())
    torch.testing.assert_close(torch.from_numpy(loaded.get_text_embedding(CAPTIONS[:2], tokenizer=loaded.tokenize,
                                                                          use_tensor=False)), emb)
    tokens = loaded.tokenize(CAPTIONS[:2])
    assert tokens['input_ids'].shape == (2, 77) and tokens['input_ids'][0, 0] == 0  # <s>, padded to 77
    # AudioCraft's `load_clap_state_dict` helper takes the same path.
    from audiocraft.utils.utils import load_clap_state_dict
    torch.manual_seed(2)
    fresh = CLAPModule(CLAP(TINY, _text_config()), loaded.tokenizer)
    load_clap_state_dict(fresh, tmp_path / 'clap.pt')
    assert all(torch.equal(v, expected[k]) for k, v in fresh.model.state_dict().items())
    with pytest.raises(RuntimeError, match="model_arch"):
        load_clap_module(tmp_path / 'clap.pt', model_arch='HTSAT-tiny')
    with pytest.raises(NotImplementedError, match="fusion"):
        load_clap_module(tmp_path / 'clap.pt', model_arch='HTSAT-test', enable_fusion=True)
    with pytest.raises(FileNotFoundError, match="METRICS.md"):
        load_clap_module(tmp_path / 'none.pt', model_arch='HTSAT-test')
    with pytest.raises(ValueError, match="HTSAT-base"):
        load_clap_module(tmp_path / 'clap.pt', model_arch='PANN-14')


def test_text_consistency_is_the_cosine_similarity(trained_checkpoint):
    metric = CLAPTextConsistencyMetric(trained_checkpoint, model_arch='HTSAT-test')
    audio = torch.stack([_sound(i, seed=100) for i in range(4)])[:, None]
    # Items of 0.5 s (repeat-padded) and 1.5 s (cropped) at 32 kHz, resampled to the model's rate.
    audio = torch.nn.functional.interpolate(audio, scale_factor=2, mode='linear')
    audio = torch.cat([audio, audio[..., :SR]], dim=-1)
    sizes = torch.tensor([SR, 3 * SR, 3 * SR, SR])
    rates = torch.full((4,), 2 * SR)
    metric.update(audio, CAPTIONS, sizes, rates)
    from audiocraft.data.audio_utils import convert_audio
    gen = torch.Generator().manual_seed(0)
    wavs = [crop_or_repeat_pad(convert_audio(a[..., :s], 2 * SR, SR, 1)[0], SR, gen) for a, s in zip(audio, sizes)]
    with torch.no_grad():
        audio_emb = metric.model.model.get_audio_embedding(torch.stack(wavs))
        text_emb = metric.model.get_text_embedding(CAPTIONS)
    expected = (audio_emb * text_emb).sum(-1) / (audio_emb.norm(dim=-1) * text_emb.norm(dim=-1))
    assert metric.compute() == pytest.approx(expected.mean().item(), abs=1e-6)
    with pytest.raises(ValueError, match="should match"):
        metric.update(audio, CAPTIONS[:2], sizes, rates)


def test_matching_pairs_score_higher_than_shuffled(trained_checkpoint):
    metric = CLAPTextConsistencyMetric(trained_checkpoint, model_arch='HTSAT-test')
    audio = torch.stack([_sound(i, seed=200) for i in range(4)])[:, None]
    sizes, rates = torch.full((4,), SR), torch.full((4,), SR)
    metric.update(audio, CAPTIONS, sizes, rates)
    matching = metric.compute()
    metric.reset()
    metric.update(audio, CAPTIONS[1:] + CAPTIONS[:1], sizes, rates)
    shuffled = metric.compute()
    assert matching > shuffled + 0.3, (matching, shuffled)


def test_cli_clap_on_folders_of_wavs(trained_checkpoint, tmp_path, capsys):
    for index in range(4):
        wav = _sound(index, seed=300)[None]
        audio_write(tmp_path / 'ref' / f'item{index}', wav, SR, strategy='clip')
        audio_write(tmp_path / 'gen' / f'item{index}', wav, SR, strategy='clip')
    args = ['clap', str(tmp_path / 'ref'), str(tmp_path / 'gen'), '--clap', str(trained_checkpoint),
            '--clap-arch', 'HTSAT-test', '--json']
    scores = []
    for captions in (CAPTIONS, CAPTIONS[1:] + CAPTIONS[:1]):
        for index, caption in enumerate(captions):
            (tmp_path / 'gen' / f'item{index}.txt').write_text(caption)
        assert cli.main(args) == 0
        scores.append(json.loads(capsys.readouterr().out)['text_consistency'])
    assert scores[0] > scores[1] + 0.3
    assert cli.main(args[:-1]) == 0
    assert capsys.readouterr().out.startswith('text_consistency: ')


def test_clap_conditioner_on_the_same_loader(trained_checkpoint):
    from audiocraft.modules.conditioners import CLAPEmbeddingConditioner
    from audiocraft.modules.conditioners.base import JointEmbedCondition
    kwargs = dict(dim=512, output_dim=8, device='cpu', attribute='description', quantize=False, n_q=1, bins=8,
                  checkpoint=str(trained_checkpoint), model_arch='HTSAT-test', enable_fusion=False,
                  sample_rate=SR, max_audio_length=1, audio_stride=1, normalize=True, text_p=0.)
    conditioner = CLAPEmbeddingConditioner(**kwargs)
    assert not any(name.startswith('clap') for name, _ in conditioner.named_parameters())  # kept out of LM state
    wav = torch.stack([_sound(i) for i in range(2)])[:, None].repeat(1, 1, 2)  # 2 s: two 1 s windows
    cond = JointEmbedCondition(wav=wav, text=[CAPTIONS[0], None], length=torch.tensor([2 * SR] * 2),
                               sample_rate=[SR, SR], path=[None, None], seek_time=[0., 0.])
    conditioner.eval()
    embed, empty = conditioner._get_embed(cond)
    expected = conditioner.clap.get_text_embedding([CAPTIONS[0], ''])
    torch.testing.assert_close(embed.view(2, -1), expected)
    assert empty.tolist() == [1]
    out, mask = conditioner(cond)
    assert out.shape == (2, 1, 8) and mask.tolist() == [[1.], [0.]]
    conditioner.train()
    embed, empty = conditioner._get_embed(cond)  # text_p=0: the audio embedding, averaged over windows
    windows = conditioner.clap.get_audio_embedding_from_data(wav[:, 0].reshape(4, SR))
    torch.testing.assert_close(embed.view(2, -1), torch.nn.functional.normalize(windows.view(2, 2, -1).mean(1), dim=-1))
    assert empty.numel() == 0
    with pytest.raises(ValueError, match="sample_rate"):
        CLAPEmbeddingConditioner(**{**kwargs, 'sample_rate': 48000})
