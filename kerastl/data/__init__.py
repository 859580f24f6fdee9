"""Input pipelines: image folders, TFDS, arrays."""
