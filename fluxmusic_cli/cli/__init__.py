"""The `fluxmusic` command line: thin modules that parse, build a request, call the engine."""
