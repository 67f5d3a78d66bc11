"""One module per CLI verb: NAME, HELP, add_arguments(parser), run(args) -> exit code. Discovered by cli.py."""
