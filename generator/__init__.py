"""Seeded, deterministic generator of the retailer's world: ERP master and sales data, the
clickstream, and the ground truth (latent tastes, future purchases) to evaluate recommenders."""
