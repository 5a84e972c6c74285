"""Clickstream: the event contract, the Kafka producer and the Kafka -> bronze ingester."""
