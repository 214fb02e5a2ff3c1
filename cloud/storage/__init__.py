"""DynamoDB: the table definitions (one source for the app, cloud-local and infra) and item helpers."""
