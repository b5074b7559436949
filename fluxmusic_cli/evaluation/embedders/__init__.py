"""Model wrappers that turn 16 kHz / 48 kHz mono waveforms into embeddings or logits.

These modules import torch at the top; only `evaluation.runner` imports them, and only when a
metric that needs them was asked for.
"""
