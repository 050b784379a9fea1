"""Operator implementations: one module per op family; importing this package fills the registry."""
