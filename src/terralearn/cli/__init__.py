"""The `terralearn` command line: one small module per command; each parses, calls a stage, prints."""
