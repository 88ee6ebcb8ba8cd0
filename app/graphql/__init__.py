"""The GraphQL API (AppSync's role): one schema root, a module per domain."""
