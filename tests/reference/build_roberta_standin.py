"""Builds `hf_cache/models--roberta-base`: a tiny random stand-in for `roberta-base` (the text
encoder laion_clap and our CLAP load), so CLAP code runs offline in tests.

A byte-level BPE tokenizer trained on a few sentences (real special tokens and ids) and a 2-layer,
32-wide RoBERTa with random weights. Run from the repository root:
`python tests/reference/build_roberta_standin.py`.
"""
from pathlib import Path
import json
import shutil
import tempfile

import torch

SNAPSHOT = 'e2da8e2f811d1448a5b465c236feacd80ffbac7b'
ROOT = Path(__file__).parent / 'hf_cache' / 'models--roberta-base'
SPECIALS = ['<s>', '<pad>', '</s>', '<unk>', '<mask>']  # roberta's ids 0..3, then <mask>
CORPUS = [
    "a low sine tone", "a high sine tone", "a buzzing square wave", "white noise hiss",
    "a calm piano melody with soft strings", "an energetic rock song with drums and electric guitar",
    "a dog barking in the distance", "rain falling on a roof", "people talking in a crowded room",
    "an upbeat electronic dance track with a heavy bass line", "the sound of a car engine starting",
    "birds singing in the morning", "a slow jazz tune played on a saxophone", "music", "noise", "silence",
]


def main() -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=600, min_frequency=1, special_tokens=SPECIALS)
    snapshot = ROOT / 'snapshots' / SNAPSHOT
    if ROOT.exists():
        shutil.rmtree(ROOT)
    snapshot.mkdir(parents=True)
    (ROOT / 'refs').mkdir()
    (ROOT / 'refs' / 'main').write_text(SNAPSHOT)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        vocab = json.loads((Path(tmp) / 'vocab.json').read_text())
        merges = [tuple(line.split()) for line in (Path(tmp) / 'merges.txt').read_text().splitlines()
                  if line and not line.startswith('#')]
        tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
        tokenizer.save_pretrained(snapshot)
        for name in ('vocab.json', 'merges.txt'):  # what older transformers read
            shutil.copy(Path(tmp) / name, snapshot / name)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=80, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2)
    RobertaModel(config).save_pretrained(snapshot)
    for path in sorted(snapshot.iterdir()):
        print(path.name, path.stat().st_size)
    print(json.dumps(tokenizer("a low sine tone")['input_ids']))


if __name__ == '__main__':
    main()
