from dedup.cli import entry

entry()
