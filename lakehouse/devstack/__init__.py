"""The embedded development stack: the long-running services the CLI starts, checks and stops
by pid (broker, Spark Connect, the Dagster UI, Superset's web server) and the demo."""
