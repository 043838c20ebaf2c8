from advgen.cli import main

main()
