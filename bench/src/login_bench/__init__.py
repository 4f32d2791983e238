"""login-stream's benchmarks (``make bench``, docs/performance.md), one installable package (``bench/``).

``harness`` (``login-bench``) runs every contender against the local broker: login-consumer, the
passthrough and seed-loop contenders (``contenders``), Quix Streams (``quix``, run by its own interpreter
in ``.venv-quix`` from this file's folder: it imports only the services' packages), with the workload of
``traffic`` and the statistics of ``stats``; results go to ``bench/results``. ``measure_state`` measures the
detector state's memory per store option; ``profile_consumer`` profiles ``Processor.process`` in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[3]  # bench/src/ -> the checkout
