"""The Hub ids and files armdata loads by default, importable without torch (the CLI shows them
in its help and records them in manifests before any model is loaded)."""

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Base-hf"   # the reference's (CC-BY-NC-4.0)
SMALL_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"    # Apache-2.0
VQVAE_REPO = "allenai/MolmoAct-7B-D-0812"
VQVAE_FILE = "vae-final.pt"
