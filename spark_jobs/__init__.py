"""PySpark jobs, plain functions (spark, inputs) -> DataFrame, run through Spark Connect."""
