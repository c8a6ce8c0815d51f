from visionrt.cli import main

main()
