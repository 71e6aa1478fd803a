"""Studies: runs of the harness that answer a question about the harness itself (e.g. whether our
live training agrees with a tabular benchmark), as opposed to searches."""
