"""The codec of the shipped `demo` model: a small 16 kHz EnCodec on procedural music, on CPU.

    python -m audiocraft.data.synth_music --out dataset/synth --num-samples 1000 --seed 0
    dora grid compression.demo_synth --dry_run --init   # registers the XP
    dora run solver=compression/demo_synth              # or run it locally (same signature)

See docs/DEMO_MODEL.md for the commands, wall times and losses of the shipped run.
"""
from ._explorers import CompressionExplorer


@CompressionExplorer
def explorer(launcher):
    # One process is all it needs: the recipe is sized for a CPU thread, not a GPU node.
    launcher.slurm_(gpus=0, cpus_per_task=2)
    launcher.bind_(solver='compression/demo_synth')
    launcher()
