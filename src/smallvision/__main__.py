from smallvision.cli.main import main

main()
