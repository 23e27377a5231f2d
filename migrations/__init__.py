"""Numbered SQL migrations, applied in order by proxy.store.migrate."""
