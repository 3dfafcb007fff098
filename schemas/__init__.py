"""Bundled JSON Schemas: recipe, sample metadata, dataset manifest."""
