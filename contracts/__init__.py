"""Typed messages exchanged on the bus: subjects, envelope and versioned models."""
