"""The Gradio demos under concurrent requests: requests queue (one generation at a time per app),
none fails, and each gets its own output. Served in-process on 127.0.0.1 and driven through
gradio's own client API (no browser; tests/test_demos_browser.py drives the pages)."""
import threading
import wave

import pytest

gr = pytest.importorskip('gradio')
gradio_client = pytest.importorskip('gradio_client')

from demos import common, magnet_app, musicgen_app  # noqa: E402


@pytest.mark.parametrize('module, app_class', [(musicgen_app, musicgen_app.MusicGenApp),
                                               (magnet_app, magnet_app.MagnetApp)])
def test_generate_is_queued_one_at_a_time(module, app_class, monkeypatch):
    blocks = module.build_interface(app_class(model_path='debug', device='cpu'))
    predict = [fn for fn in blocks.fns.values() if fn.api_name == 'predict']
    assert len(predict) == 1 and predict[0].concurrency_limit == 1 and predict[0].queue
    launched = {}

    class FakeBlocks:
        def queue(self):
            launched['queued'] = True
            return self

        def launch(self, **kwargs):
            launched.update(kwargs)
    common.launch(FakeBlocks(), common.demo_parser('x').parse_args([]))
    assert launched['queued'] and launched['server_name'] == '127.0.0.1'


def _seconds(path: str) -> float:
    with wave.open(path) as wav:
        return wav.getnframes() / wav.getframerate()


@pytest.mark.slow
def test_two_simultaneous_requests_both_succeed_with_their_own_output(tmp_path, monkeypatch):
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    monkeypatch.setenv('GRADIO_ANALYTICS_ENABLED', 'False')
    app = musicgen_app.MusicGenApp(model_path='debug', device='cpu')
    running = []
    overlaps = []
    real_stream = app.generate_stream

    def generate_stream(*args, **kwargs):  # what the MusicGen app runs for durations up to max_duration
        overlaps.append(len(running))
        running.append(1)
        try:
            yield from real_stream(*args, **kwargs)
        finally:
            running.pop()
    monkeypatch.setattr(app, 'generate_stream', generate_stream)
    blocks = musicgen_app.build_interface(app)
    blocks.queue().launch(server_name='127.0.0.1', server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(blocks.local_url, verbose=False)
        results = {}

        def request(key, duration):
            results[key] = client.predict('debug', f'prompt {key}', None, duration, 250, 0.0, 1.0, 3.0, key,
                                          api_name='/predict')
        threads = [threading.Thread(target=request, args=(1, 1.0)), threading.Thread(target=request, args=(2, 1.5))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert set(results) == {1, 2}
        # Outputs: the live player, then the WAV and its waveform picture (last update wins).
        (_, path_1, _), (_, path_2, _) = results[1], results[2]
        assert path_1 != path_2
        assert abs(_seconds(path_1) - 1.0) < 0.05 and abs(_seconds(path_2) - 1.5) < 0.05
        assert overlaps == [0, 0]  # queued: the second started after the first ended
    finally:
        blocks.close()
