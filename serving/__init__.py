"""The real-time side: the serving snapshot, re-ranking with the live session, the API."""
