"""The stateful detectors: what they are (``base.py``), their names (``names.py``), the user stage's
(``users.py``: brute_force, impossible_travel, new_device, new_country) and the network stage's
(``networks.py``: credential_stuffing). Their state lives in ``stores/``; ``wiring.py`` chooses them from
the settings. This package imports neither the settings model nor the stages.
"""
