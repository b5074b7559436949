"""The inference engine: registry, loading, conditioning, sampling, decoding, orchestration.

Nothing here prints or imports from `fluxmusic_cli.cli`. Heavy libraries (torch, transformers,
diffusers) are imported inside the functions that need them.
"""
