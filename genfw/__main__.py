from genfw.cli import main

main()
