"""Talking to Asterisk's Manager Interface."""
