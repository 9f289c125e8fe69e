"""One file per revision, named after its id; revision.REVISIONS lists them in order."""
