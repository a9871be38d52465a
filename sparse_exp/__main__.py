from sparse_exp.cli import main

main()
