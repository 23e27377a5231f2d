"""Data files shipped with the gateway (the o200k_base BPE ranks for token estimates)."""
