"""The edge↔cloud websocket link: ``$connect``/``$disconnect`` (:mod:`.session`) and ``$default`` (:mod:`.dispatch`)."""
