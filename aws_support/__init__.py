"""What both serverless apps (``cloud`` and ``license_server``) need from AWS the same way: secrets read at run
time, and their DynamoDB tables created from one definition. Small on purpose: the two apps never import each
other, and each Lambda bundles this package with its own (``infra/apps.py``)."""
