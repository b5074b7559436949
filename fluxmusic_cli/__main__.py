from fluxmusic_cli.cli.app import main

main()
