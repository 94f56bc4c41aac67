"""Test and demo helpers: a demo jury package, scripted jurors, a dev server for browser tests."""
