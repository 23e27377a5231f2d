"""Who may call, and how often: API key material, key authentication, rate limits."""
