"""Test and demo helpers: a demo jury package, scripted jurors, a dev server and browser helpers for browser tests."""
