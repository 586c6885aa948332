"""The HTTP layer: it translates requests into lease-rule calls and answers."""
