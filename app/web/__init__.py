"""The dashboard: static ES modules served by the app itself (no build step, no CDN)."""
