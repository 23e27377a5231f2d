"""Pure logic of where a request goes: the catalog, route plans, auto-routing and sessions."""
