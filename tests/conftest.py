"""Fixtures reach every test package as plugins (``tests/plugins/``), not through imports of conftest files.

``broker``: ``kafka`` (a real broker's address), ``unique``, ``topic_factory``, ``group_factory``. Each tier's
own helpers live in its folder's conftest: ``tests/integration/conftest.py`` (the broker tests' harness and
``wait_for``), ``tests/chart/conftest.py`` (the offline chart render), ``tests/control_plane/conftest.py``
(a real API server).
"""

pytest_plugins = ["tests.plugins.broker"]
