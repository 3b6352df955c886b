"""Storage and retrieval of generated samples (see `manager.SampleManager`)."""
