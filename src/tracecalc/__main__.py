from tracecalc.cli import main

main()
