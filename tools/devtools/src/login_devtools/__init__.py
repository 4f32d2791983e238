"""login-stream's developer tools, one installable package (``tools/devtools``, console scripts in
``pyproject.toml``) instead of loose scripts importing each other by bare name.

* the local environment: ``local_kafka`` (``login-kafka``: one broker, or a three-broker cluster through
  ``kafka_cluster``; SASL_SSL through ``kafka_security``), ``local_prometheus``, ``local_alertmanager``,
  ``local_pipeline`` (``login-pipeline``: ``make run``/``stop``/``health``/``logs``/``monitor``), ``demo``,
  ``live_view`` and ``service_env`` (what the services started by them see);
* the dashboards generator (``build_dashboards``, ``login-dashboards``: its output ships in the chart);
* the detector evaluation (``evaluate``, ``login-evaluate``);
* the local control plane and real node (``k8s_api``, ``k8s_node``) and what the tests need installed
  (``provision``: ``make setup``, ``make tools``).

These are repository tools, installed editable by ``make init``: ``ROOT`` is the checkout they belong to
(state under ``.cache``, the chart, the rules, the dashboards). Targets that must work without ``.venv``
(``make kafka-down``, ``make setup``, the control plane run as root) run a module from the source tree with
the system Python (``PYTHONPATH=tools/devtools/src python3 -m login_devtools.local_kafka``): the modules
they import need nothing outside the standard library at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[4]  # tools/devtools/src/ -> the checkout
