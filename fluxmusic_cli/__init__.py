"""fluxmusic: text-to-music with FluxMusic from the command line."""

__version__ = "0.1.0"
