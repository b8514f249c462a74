"""Deterministic simulation of Totem nodes: ``python -m pvectl.sim`` (see world.py)."""
