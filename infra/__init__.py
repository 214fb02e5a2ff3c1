"""Deployment: the Chalice packaging of the cloud and the license server, their CloudFormation resources and IAM.

Nothing here runs in a Lambda or on a customer's PBX; it builds what does (see ``docs/deploy.md``).
"""
