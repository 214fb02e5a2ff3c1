"""The connector to Bitrix24 REST: one client per portal (OAuth refresh, rate limits, retries, batch), and the
app's install and event routes."""
