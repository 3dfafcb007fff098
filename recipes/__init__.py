"""Bundled recipes (TOML data files), one per corpus; loaded by talkdata.recipe."""
