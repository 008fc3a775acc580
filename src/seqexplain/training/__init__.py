"""Training loops, schedules and checkpoints for the models seqexplain explains."""
