"""Bronze ingestion from the ERP database (the clickstream ingester is streaming/ingest.py)."""
