"""Provider adapters: translate requests, responses and stream events without doing I/O."""
