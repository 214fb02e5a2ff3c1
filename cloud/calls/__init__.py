"""Calls as the cloud knows them: every event stored once, and a per-tenant call state built from them."""
