"""Identity: passwords, device and refresh codes, signing keys and login tokens (joserfc)."""
