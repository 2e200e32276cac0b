"""What the command-line steps share about their console and their outputs: writing the
files a command was asked to produce (one helper, one kind of error), generated files that
keep a hand edit, and the standard output a reader may close early."""
