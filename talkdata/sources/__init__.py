"""Corpus sources: one module per dataset that indexes its raw layout into clip records."""
