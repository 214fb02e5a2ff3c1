"""``make demo``: the product on this machine, on embedded defaults (test doubles and recorded traces)."""
