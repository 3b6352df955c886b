"""`generate(..., stream=True)`: audio chunks while tokens are produced, equal to the one-shot audio.

The codec is not causal, so chunks are decoded from overlapping windows and cross-faded
(`audiocraft.models.audio_stream`): their concatenation must match `generate` within 1e-3 and
have no step at the joins.
"""
import contextlib

import pytest
import torch

from audiocraft.models import MusicGen
from audiocraft.models.audio_stream import StreamingDecoder
from audiocraft.utils.errors import InvalidArgumentError

pytestmark = pytest.mark.usefixtures('single_thread')
DESCRIPTIONS = ['80s pop', 'calm piano']


@pytest.fixture(scope="module")
def musicgen(cases_dir):
    model = MusicGen.get_pretrained(str(cases_dir / 'musicgen_text_tiny'), device='cpu')
    model.set_generation_params(use_sampling=False, duration=2.0, cfg_coef=3.0)
    return model


def test_streamed_audio_equals_generate_and_is_seamless(musicgen):
    full = musicgen.generate(DESCRIPTIONS)
    steps_at_chunk = []
    done = {'steps': 0}
    musicgen.set_custom_progress_callback(lambda step, total: done.update(steps=step))
    try:
        chunks = []
        for chunk in musicgen.generate(DESCRIPTIONS, progress=True, stream=True, chunk_seconds=0.5):
            steps_at_chunk.append(done['steps'])
            chunks.append(chunk)
    finally:
        musicgen.set_custom_progress_callback(None)
    assert len(chunks) >= 3 and all(c.shape[:2] == full.shape[:2] for c in chunks)
    # Chunks arrive while tokens are still being produced.
    assert steps_at_chunk[0] < steps_at_chunk[-1]
    streamed = torch.cat(chunks, dim=-1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-3
    # Seamless: at each join, the step between samples is no larger than the one-shot audio's there.
    join = 0
    for chunk in chunks[:-1]:
        join += chunk.shape[-1]
        step = (streamed[..., join] - streamed[..., join - 1]).abs()
        reference = (full[..., join] - full[..., join - 1]).abs()
        assert (step - reference).abs().max() <= 1e-3


def test_closing_the_stream_early_leaves_the_model_usable(musicgen):
    reference = musicgen.generate(DESCRIPTIONS, return_tokens=True)[1]
    with contextlib.closing(musicgen.generate(DESCRIPTIONS, stream=True, chunk_seconds=0.5)) as stream:
        next(stream)
    assert not musicgen.lm._is_streaming
    assert torch.equal(musicgen.generate(DESCRIPTIONS, return_tokens=True)[1], reference)


def test_stream_argument_errors(musicgen):
    with pytest.raises(InvalidArgumentError, match='chunk_seconds'):
        next(musicgen.generate(DESCRIPTIONS, stream=True, chunk_seconds=0))
    saved = musicgen.duration
    musicgen.duration = musicgen.max_duration + 1
    try:
        with pytest.raises(InvalidArgumentError, match='max_duration'):
            next(musicgen.generate(DESCRIPTIONS, stream=True))
    finally:
        musicgen.duration = saved


def test_streaming_decoder_matches_one_shot_decode(musicgen):
    codec = musicgen.compression_model
    torch.manual_seed(0)
    codes = torch.randint(0, codec.cardinality, (1, codec.num_codebooks, 120))
    with torch.no_grad():
        full = codec.decode(codes, None)
    decoder = StreamingDecoder(codec, chunk_frames=17)
    chunks = [decoder.push(lambda: codes, ready) for ready in range(1, 121)]
    chunks.append(decoder.push(lambda: codes, 120, final=True))
    streamed = torch.cat([c for c in chunks if c is not None], dim=-1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() <= 1e-3
    assert decoder.push(lambda: codes, 120, final=True) is None  # nothing left
