from fplora.cli import main

main()
