"""The agent's websocket link to the cloud: a sans-I/O state machine (``protocol``) and its driver (``client``)."""
