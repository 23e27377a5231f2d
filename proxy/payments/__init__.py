"""Stripe: Checkout Sessions, webhook verification, listing sessions to reconcile."""
