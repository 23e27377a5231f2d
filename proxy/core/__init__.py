"""What every layer speaks: settings, the error tree, integer money, chat types, SSE.

Imports nothing else of ours, so any package may depend on it.
"""
