"""latentcode: train, detect and report latent codes hidden in language-model text."""

import os

# No network at run time: transformers and huggingface_hub read these at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from .memory import return_large_blocks

return_large_blocks()  # freed [tokens x vocabulary] buffers go back to the OS (memory.py)

__version__ = "0.1.0"
