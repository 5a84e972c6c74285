"""Platform core: settings, the `lakehouse` CLI, the embedded services and the Spark session."""
