"""Great Expectations (GX 1.x) suites and the code that runs them as Dagster asset checks."""
