from fieldwatch.cli import main

main()
