"""Subcommands of `armdata`, one module each, exposing `register(subparsers)`."""
