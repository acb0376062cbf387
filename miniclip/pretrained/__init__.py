"""Weights in and out of files: ``load(name_or_path)``, OpenAI <-> Hugging Face names, safetensors
and npz, run checkpoints, the converter, OpenAI's image preprocessing and the zero-shot CLI."""
