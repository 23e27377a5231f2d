"""The HTTP surfaces: the ASGI edge, `/v1` handlers, health; they parse, call services, render."""
