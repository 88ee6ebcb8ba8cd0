"""The control plane's own health: pings that prove API → broker → worker → database works."""
