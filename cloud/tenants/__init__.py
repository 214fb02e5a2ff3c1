"""Bitrix24 portals that installed the app: install data, application token hash, OAuth tokens."""
