"""Our LAION-CLAP against laion_clap's own modules, with shared random weights.

Skipped unless `laion_clap` (and torchlibrosa, librosa, h5py it imports) is installed. laion_clap's
package imports its training code, torchvision and more at import time; only its model modules
are loaded here, with stub `laion_clap`, `laion_clap.clap_module` and `torchvision` packages that
skip those imports (all undone after the test). To run it, install `laion_clap --no-deps` with
torchlibrosa, librosa and h5py next to this library's requirements.
"""
import importlib
import importlib.machinery
import importlib.util
from pathlib import Path
import sys
import types

import pytest
import torch

from audiocraft.modules.clap import CLAP, HTSATConfig

SR = 16000
TINY = HTSATConfig(sample_rate=SR, clip_samples=SR, window_size=512, hop_size=256, mel_bins=16, fmin=50.,
                   fmax=8000., spec_size=64, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), swin_window=4,
                   num_classes=10)


@pytest.fixture
def laion(monkeypatch):
    """laion_clap's `clap_module.model` and `clap_module.htsat` modules, imported without the package's
    `__init__` (which needs torchvision and the training stack)."""
    spec = importlib.util.find_spec('laion_clap')
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("laion_clap is not installed")
    for name in ('torchlibrosa', 'librosa', 'h5py'):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"laion_clap's model code needs {name}")
    # transformers looks torchvision up while importing: import what laion_clap uses before the stub exists.
    from transformers import BartModel, BertModel, RobertaModel  # noqa: F401
    from transformers.tokenization_utils_base import BatchEncoding  # noqa: F401
    root = Path(list(spec.submodule_search_locations)[0])
    for name, path in (('laion_clap', root), ('laion_clap.clap_module', root / 'clap_module')):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        monkeypatch.setitem(sys.modules, name, package)
    # torchvision wheels may not load with this torch; the model code only names FrozenBatchNorm2d.
    misc = types.ModuleType('torchvision.ops.misc')
    misc.FrozenBatchNorm2d = type('FrozenBatchNorm2d', (torch.nn.Module,), {})
    for name, module in (('torchvision', types.ModuleType('torchvision')),
                         ('torchvision.ops', types.ModuleType('torchvision.ops')), ('torchvision.ops.misc', misc)):
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n.startswith('laion_clap.clap_module.')]:
        monkeypatch.delitem(sys.modules, name)
    try:
        model = importlib.import_module('laion_clap.clap_module.model')
        htsat = importlib.import_module('laion_clap.clap_module.htsat')
    except ImportError as exc:
        pytest.skip(f"laion_clap's model code does not import here: {exc}")
    yield types.SimpleNamespace(model=model, htsat=htsat)
    for name in [n for n in sys.modules if n.startswith('laion_clap.')]:
        monkeypatch.delitem(sys.modules, name, raising=False)


def _laion_clap(laion, monkeypatch) -> torch.nn.Module:
    """laion_clap's CLAP with the small HTS-AT and the stand-in roberta-base (768 -> its width)."""
    from transformers import RobertaConfig
    audio_cfg = laion.model.CLAPAudioCfp(model_type='HTSAT', model_name='tiny', sample_rate=SR,
                                         window_size=TINY.window_size, hop_size=TINY.hop_size,
                                         mel_bins=TINY.mel_bins, fmin=TINY.fmin, fmax=TINY.fmax,
                                         class_num=TINY.num_classes, clip_samples=TINY.clip_samples)
    text_cfg = dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12, model_type='roberta')

    def small_htsat(cfg, enable_fusion=False, fusion_type='None'):
        return laion.htsat.HTSAT_Swin_Transformer(
            spec_size=TINY.spec_size, patch_size=TINY.patch_size, patch_stride=(TINY.patch_stride,) * 2,
            num_classes=TINY.num_classes, embed_dim=TINY.embed_dim, depths=list(TINY.depths),
            num_heads=list(TINY.num_heads), window_size=TINY.swin_window, config=cfg)

    # laion_clap's factory only knows its full-size presets: build the small one instead.
    monkeypatch.setattr(laion.model, 'create_htsat_model', small_htsat)
    model = laion.model.CLAP(embed_dim=TINY.num_features, audio_cfg=audio_cfg, text_cfg=text_cfg)
    # laion_clap hard-codes roberta-base's width (768); the stand-in is narrower.
    width = RobertaConfig.from_pretrained('roberta-base').hidden_size
    model.text_projection[0] = torch.nn.Linear(width, model.joint_embed_shape)
    return model.eval()


def test_same_names_same_front_end_same_embeddings(laion, monkeypatch):
    from transformers import RobertaConfig, RobertaTokenizer
    torch.manual_seed(0)
    reference = _laion_clap(laion, monkeypatch)
    ours = CLAP(TINY, RobertaConfig.from_pretrained('roberta-base')).eval()
    theirs = reference.state_dict()
    assert set(ours.state_dict()) == set(theirs)
    # Same front end from scratch: DFT kernels, librosa's mel filters, Swin relative positions and masks.
    for key, value in ours.state_dict().items():
        if 'extractor' in key or 'relative_position_index' in key or 'attn_mask' in key:
            torch.testing.assert_close(value.float(), theirs[key].float(), rtol=1e-5, atol=1e-6, msg=key)
    # Shared random weights, batch-norm statistics included.
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if tensor.is_floating_point() and 'extractor' not in name and 'attn_mask' not in name:
                tensor.add_(0.05 * torch.randn_like(tensor))
        reference.audio_branch.bn0.running_var.abs_().add_(0.5)
    ours.load_state_dict(reference.state_dict())
    wav = 0.3 * torch.randn(3, SR)
    tokenizer = RobertaTokenizer.from_pretrained('roberta-base')
    texts = ["a dog barking", "rain on a roof", "music"]
    with torch.no_grad():
        expected_audio = reference.get_audio_embedding([{'waveform': w} for w in wav])
        expected_text = reference.get_text_embedding(
            dict(tokenizer(texts, padding='max_length', truncation=True, max_length=77, return_tensors='pt')))
        tokens = tokenizer(texts, padding='max_length', truncation=True, max_length=77, return_tensors='pt')
        torch.testing.assert_close(ours.get_audio_embedding(wav), expected_audio, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.get_text_embedding(tokens), expected_text, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('arch', ['HTSAT-tiny', 'HTSAT-base'])
def test_presets_are_laion_clap_models(laion, arch):
    import json
    from audiocraft.modules.clap import HTSAT
    from audiocraft.modules.clap.model import HTSAT_PRESETS
    config_dir = Path(laion.model.__file__).parent / 'model_configs'
    audio_cfg = json.loads((config_dir / f'{arch}.json').read_text())['audio_cfg']
    preset = HTSAT_PRESETS[arch]
    for key, ours in (('sample_rate', preset.sample_rate), ('clip_samples', preset.clip_samples),
                      ('window_size', preset.window_size), ('hop_size', preset.hop_size),
                      ('mel_bins', preset.mel_bins), ('fmin', preset.fmin), ('fmax', preset.fmax),
                      ('class_num', preset.num_classes)):
        assert audio_cfg[key] == ours, key
    theirs = laion.htsat.create_htsat_model(laion.model.CLAPAudioCfp(**audio_cfg)).state_dict()
    ours = HTSAT(preset).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_full_size_htsat_base_gives_laion_clap_embedding(laion):
    """The released size and input: 10 s at 48 kHz (1001 frames stretched to 1024), windows of 8."""
    import json
    from audiocraft.modules.clap import HTSAT
    from audiocraft.modules.clap.model import HTSAT_PRESETS
    config_dir = Path(laion.model.__file__).parent / 'model_configs'
    audio_cfg = json.loads((config_dir / 'HTSAT-base.json').read_text())['audio_cfg']
    torch.manual_seed(0)
    reference = laion.htsat.create_htsat_model(laion.model.CLAPAudioCfp(**audio_cfg)).eval()
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if tensor.is_floating_point() and 'extractor' not in name and 'attn_mask' not in name:
                tensor.add_(0.02 * torch.randn_like(tensor))
        reference.bn0.running_var.abs_().add_(0.5)
    ours = HTSAT(HTSAT_PRESETS['HTSAT-base']).eval()
    ours.load_state_dict(reference.state_dict())
    wav = 0.1 * torch.randn(1, 480_000)
    with torch.no_grad():
        expected = reference({'waveform': wav}, device='cpu')['embedding']
        torch.testing.assert_close(ours(wav), expected, rtol=1e-4, atol=1e-4)
