"""Offline fixtures shared by tests and the demo: a tiny model and synthetic images."""
