"""What the command-line steps share about their console and their outputs: writing the
files a command was asked to produce (one helper, one kind of error), generated files that
keep a hand edit, and the standard output a reader may close early (``output``,
``generated``); loading the config from a command's arguments, the store and tracker it
works with, printing a result as text or JSON and ``--param KEY=VALUE`` overrides
(``common``); the argparse types that refuse a bad argument in one line (``argtypes``).

Steps and drivers use it; it sits above the executors (the store it builds may read through
the S3 remote)."""
