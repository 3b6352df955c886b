"""Export training checkpoints into the pretrained format read by `get_pretrained`."""
