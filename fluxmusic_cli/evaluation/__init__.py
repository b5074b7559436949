"""Evaluation of generated music: FAD, KL, IS and CLAP score as the FluxMusic paper reports them.

`metrics` holds the maths (numpy only), `frontends` the log-mel front ends, `embedders` the model
wrappers (VGGish, PANNs CNN14 16 kHz, CLAP), `weights` the checked downloads, `cache` the
per-file embedding store and `runner` the orchestration the `eval` command calls. Importing this
package does not import torch.
"""
