"""Calling providers: connection pools, streams, failover and upstream health.

The only package that imports httpx.
"""
