"""Golden MusicGen cases (tests/reference/cases): conditions, logits and greedy generations.

Each case runs in its own process (this file is also a script: `python test_reference_cases.py
CASE_DIR [DECODE_OPTIONS_JSON]` prints the check results as JSON), so no state is shared between
models. With decode options (e.g. '{"static": true}'), generation runs on the static-cache paths
of `audiocraft.models.decoding` and must still reproduce the golden tokens.
Tokens must be equal; waveforms, logits and condition tensors within 1e-4.
"""
import json
import os
from pathlib import Path
import subprocess
import sys
import typing as tp

import pytest

ATOL = 1e-4
Result = tp.Tuple[str, bool, str]


def _close(a, b, atol: float = ATOL) -> tp.Tuple[bool, str]:
    import torch
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    if a.shape != b.shape:
        return False, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    return err <= atol, f"max abs err {err:.2e}"


def _equal(a, b) -> tp.Tuple[bool, str]:
    import torch
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    n = int((a != b).sum().item())
    return n == 0, f"{n} of {a.numel()} differ"


def _generate(model, io: dict, name: str, gen: dict):
    model.set_generation_params(**gen['params'])
    call = gen['call']
    saved = model.max_duration
    if 'max_duration' in call:
        model.max_duration = call['max_duration']
    try:
        if call['fn'] == 'generate':
            return model.generate(call['descriptions'], return_tokens=True)
        if call['fn'] == 'generate_unconditional':
            return model.generate_unconditional(call['num_samples'], return_tokens=True)
        if call['fn'] == 'generate_continuation':
            return model.generate_continuation(io[f'{name}.prompt'], model.sample_rate, call['descriptions'],
                                               return_tokens=True)
        if call['fn'] == 'generate_with_chroma':
            return model.generate_with_chroma(call['descriptions'], io[f'{name}.melody'], model.sample_rate,
                                              return_tokens=True)
        raise ValueError(f"unknown call {call['fn']}")
    finally:
        model.max_duration = saved


def run_case(case_dir: Path, decode: tp.Optional[dict] = None) -> tp.List[Result]:
    """Load the case with MusicGen.get_pretrained and compare every output of io.pt.

    `decode`: fields of `DecodeOptions` to generate with (default decoding when None)."""
    import torch
    from audiocraft.models import MusicGen
    torch.set_num_threads(1)
    io = torch.load(case_dir / 'io.pt', map_location='cpu', weights_only=False)
    results: tp.List[Result] = []

    def check(name: str, fn: tp.Callable[[], tp.Tuple[bool, str]]) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:  # a crash is a failed check, with its reason
            ok, detail = False, f"raised {type(exc).__name__}: {exc}"
        results.append((name, bool(ok), detail))

    model = MusicGen.get_pretrained(str(case_dir), device='cpu')
    lm = model.lm.eval()
    if decode:
        lm.set_decode_options(**decode)
    meta = (model.sample_rate, model.frame_rate, model.max_duration)
    check('meta', lambda: (meta == (io['sample_rate'], io['frame_rate'], io['max_duration']), str(meta)))

    def conditions() -> tp.Tuple[bool, str]:
        attrs, _ = model._prepare_tokens_and_attributes(io['descriptions'], None)
        conds = lm.condition_provider(lm.condition_provider.tokenize(attrs))
        details = []
        for key, (emb, mask) in io['condition_tensors'].items():
            ok, detail = _close(conds[key][0], emb)
            ok_mask, detail_mask = _equal(conds[key][1].bool(), mask.bool())
            if not (ok and ok_mask):
                return False, f"{key}: {detail}; mask {detail_mask}"
            details.append(f"{key}: {detail}")
        return True, '; '.join(details)

    def predictions() -> tp.Tuple[bool, str]:
        attrs, _ = model._prepare_tokens_and_attributes(io['descriptions'], None)
        out = lm.compute_predictions(io['codes'], attrs)
        logits, mask = io['predictions']
        ok, detail = _equal(out.mask.bool(), mask.bool())
        if not ok:
            return False, f"mask {detail}"
        return _close(out.logits[mask.bool()], logits[mask.bool()])

    with torch.no_grad():
        check('condition_tensors', conditions)
        check('predictions', predictions)
        for name, gen in io['generations'].items():
            def generation(name=name, gen=gen) -> tp.Tuple[bool, str]:
                wav, tokens = _generate(model, io, name, gen)
                ok, detail = _equal(tokens, gen['tokens'])
                if not ok:
                    return False, f"tokens {detail}"
                return _close(wav, gen['wav'])
            check(f'generate:{name}', generation)
    return results


@pytest.mark.parametrize('case', [
    'musicgen_text_tiny',
    # RoPE: generation must follow AudioCraft's cached rotary positions (see attention._rope_start).
    'musicgen_variants_tiny',
    # demucs separates the melodies: about a minute on two cores.
    pytest.param('musicgen_melody_tiny', marks=pytest.mark.slow),
])
def test_reference_case(case, cases_dir):
    _check_case(cases_dir / case)


def _check_case(case_dir: Path, decode: tp.Optional[dict] = None) -> None:
    """Run `run_case` in a fresh process and assert that every check passed."""
    env = dict(os.environ)  # conftest points the hub caches at tests/reference
    # The child runs this file as a script: put this checkout first, before any installed audiocraft.
    root = str(Path(__file__).resolve().parents[1])
    env['PYTHONPATH'] = os.pathsep.join([root] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    args = [sys.executable, __file__, str(case_dir)] + ([json.dumps(decode)] if decode else [])
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_checks = {'meta', 'condition_tensors', 'predictions'}
    assert expected_checks <= {name for name, _, _ in results}
    assert sum(name.startswith('generate:') for name, _, _ in results) >= 2
    failures = [f"{name}: {detail}" for name, ok, detail in results if not ok]
    assert not failures, "\n".join(failures)


if __name__ == '__main__':
    print(json.dumps(run_case(Path(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else None)))
