"""The ground every other package stands on: settings, lake access and the service clients
(Kafka, Spark Connect). It imports nothing else of the project (checked by import-linter)."""
