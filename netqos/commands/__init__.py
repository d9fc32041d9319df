"""The `netqos` subcommands, one module per group; `netqos/cli.py` holds the parser and dispatch."""
