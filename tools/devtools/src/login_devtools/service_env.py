"""The environment a script gives the services it starts (login-producer, login-consumer).

Why this exists: GNU make exports every variable given on its command line to the processes of its
recipes ("set on the command line and its name consists only of letters, numbers, and underscores":
GNU make manual, "Communicating Variables to a Sub-make"). The services read their settings from the
environment, under plain names (DURATION, RATE, COUNT, SEED, BATCH_SIZE ...), so ``make demo DURATION=30``
handed DURATION=30 to the producer too: it stopped itself 30 s after *its* start while the demo counted
30 s from the moment the pipeline was ready, and the demo ended with "a service exited early".

The choice (issue 21): make's command line configures make and the scripts; it never reaches the
services. Every launcher (local_pipeline.py for ``make run`` and ``make demo``, evaluate.py,
login_bench/harness.py) builds the services' environment with ``service_env``:

1. the variables given on make's command line are removed. Make lists them in ``MAKEFLAGS`` (after
   `` -- ``), which it puts in every recipe's environment; the scripts themselves still read them (the
   demo's DURATION, ``make kafka-up KAFKA_SECURITY=sasl_ssl``), only the services do not;
2. the settings the launcher owns for the run are set explicitly (``overrides``): the demo and ``make run``
   stop the producer themselves, so its DURATION and COUNT are 0 whatever the shell's environment holds,
   and a ``--duration`` of the demo counts the same for every process it starts.

A service setting for a local run goes in the environment make is started from
(``LOG_LEVEL=DEBUG make run``); one given on make's command line is named in a note (``held_back``) and not
passed. The alternative (a prefix such as LOGIN_PRODUCER_ on every setting, the old names kept where the
chart uses them) was not taken: it changes the services' contract with the chart, the docs and every
deployment for a problem of the local launchers, and kept old names would still collide.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# A variable definition as make writes it into MAKEFLAGS: NAME=value, NAME:=value, NAME+=value ...
_DEFINITION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)[:+?!]*=")


def make_command_line_variables(makeflags: str | None = None) -> list[str]:
    """Names of the variables given on make's command line, read from ``MAKEFLAGS`` (the environment's
    when not given). Make writes them after a ``--`` word, spaces inside a value escaped as ``\\ ``:
    ``"s -- DURATION=30 KAFKA_PORT=19092"``. Empty outside make."""
    flags = os.environ.get("MAKEFLAGS", "") if makeflags is None else makeflags
    words = re.split(r"(?<!\\) +", flags.strip())
    if "--" not in words:
        return []
    names = []
    for word in words[words.index("--") + 1 :]:
        match = _DEFINITION.match(word)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def service_env(
    overrides: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
    makeflags: str | None = None,
) -> dict[str, str]:
    """``base`` (the environment) without make's command-line variables, then ``overrides`` on top."""
    env = dict(os.environ if base is None else base)
    for name in make_command_line_variables(makeflags if makeflags is not None else env.get("MAKEFLAGS")):
        env.pop(name, None)
    env.update(overrides or {})
    return env


def held_back(
    service_settings: Iterable[str],
    overrides: Mapping[str, str] | None = None,
    makeflags: str | None = None,
) -> list[str]:
    """The service settings given on make's command line that ``service_env`` does not pass on (those the
    launcher sets itself excepted): what a note should name."""
    settings = {s.upper() for s in service_settings}
    own = set(overrides or {})
    return [n for n in make_command_line_variables(makeflags) if n in settings and n not in own]


def service_setting_names() -> set[str]:
    """Every environment variable login-producer and login-consumer read (their settings models).
    Empty when the services are not installed in this interpreter (the note is then left out)."""
    try:
        from login_common.settings import env_name
        from login_consumer.config import ConsumerSettings
        from login_producer.config import ProducerSettings
    except ImportError:
        return set()
    names: set[str] = set()
    for model in (ProducerSettings, ConsumerSettings):
        names |= {env_name(model, field) for field in model.model_fields}
    return names


def note(overrides: Mapping[str, str] | None = None) -> str:
    """One line naming the service settings given on make's command line and not passed, or ''."""
    names = held_back(service_setting_names(), overrides)
    if not names:
        return ""
    given = " ".join(f"{n}=…" for n in names)
    return (
        f"note: the services do not get {', '.join(names)} from make's command line (make's variables "
        f"configure make); for the services, set it in the environment: `{given} make <target>`"
    )
