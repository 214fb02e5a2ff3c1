"""The vendor's license server: licenses per portal and signed leases of the features each one paid for.

Its own Chalice app and tables; never imports ``edge_agent``, ``cloud`` or ``sandbox``.
"""
