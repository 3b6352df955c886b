"""Loading pretrained checkpoints (`state_dict.bin`, `compression_state_dict.bin`) by file, folder, URL or hub id."""
