"""The `tokenroute` command."""
