from forgetkit.cli import main

main()
