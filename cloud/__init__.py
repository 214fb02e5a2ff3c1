"""The serverless backend (AWS Chalice): websocket API for edge agents, Bitrix24 app handlers, CRM logic.

Imports ``wire_protocol``; never ``edge_agent`` or ``sandbox``. Built from the edge↔cloud link issue on.
"""
