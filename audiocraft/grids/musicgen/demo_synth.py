"""The LM of the shipped `demo` model: a small MusicGen on the compression.demo_synth tokens.

    dora grid musicgen.demo_synth --dry_run --init   # registers the XP
    dora run solver=musicgen/demo_synth              # or run it locally (same signature)

The codec XP is `compression_model_checkpoint` in config/solver/musicgen/demo_synth.yaml.
See docs/DEMO_MODEL.md for the commands, wall times and losses of the shipped run.
"""
from ._explorers import LMExplorer


@LMExplorer
def explorer(launcher):
    # One process is all it needs: the recipe is sized for a CPU thread, not a GPU node.
    launcher.slurm_(gpus=0, cpus_per_task=2)
    launcher.bind_(solver='musicgen/demo_synth')
    launcher()
