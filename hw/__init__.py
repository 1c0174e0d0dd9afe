"""Amaranth generator of the SNN core (never imports torch)."""
