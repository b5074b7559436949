#!/usr/bin/env bash
# Regenerate the shell completion scripts from the installed `fluxmusic` app.
# The scripts ask the program itself for candidates at completion time, so new commands and
# options complete without regenerating; regenerate after upgrading typer.
set -euo pipefail
cd "$(dirname "$0")"
_FLUXMUSIC_COMPLETE=source_bash fluxmusic > fluxmusic.bash
_FLUXMUSIC_COMPLETE=source_zsh fluxmusic > _fluxmusic
_FLUXMUSIC_COMPLETE=source_fish fluxmusic > fluxmusic.fish
