from lfft.cli import main

main()
