"""Edge agents: their tokens, their live connections, and commands pushed to them."""
