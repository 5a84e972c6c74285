"""Dagster code location: definitions, per-domain assets/resources/schedules/sensors, lib."""
