"""Thin task modules: open a session, call a domain service, let the boundary commit."""
