"""The tier covers the README: every command it shows has a test, every test's command is still shown."""

from __future__ import annotations

from tests.readme import readme, registry


def untested(text: str | None = None) -> list[str]:
    shown = readme.commands(text)
    tested = registry.tested()
    return [
        f"`{command}` (README.md line {places[0].line}, section {places[0].section!r})"
        for command, places in shown.items()
        if command not in tested
    ]


def test_every_command_the_readme_shows_is_run_by_a_test() -> None:
    missing = untested()
    assert not missing, (
        "README.md shows commands no test in tests/readme runs; add a test that runs each as written and "
        "checks what the README promises, registered with @runs('<command>'):\n  " + "\n  ".join(missing)
    )


def test_every_registered_command_is_still_shown() -> None:
    shown = readme.commands()
    stale = {c: t for c, t in registry.tested().items() if c not in shown}
    assert not stale, f"registered commands the README no longer shows (update the tests): {stale}"


SAMPLE = """intro `make demo DURATION=30` and `go install` and `scripts/`

```bash
make run       # a comment
# only a comment

make tools cluster
```

## Local pipeline (no cluster)

| target | what |
|---|---|
| `make kafka-up KAFKA_SECURITY=sasl_ssl` | a table cell |

Wrapped: `.venv/bin/python scripts/live_view.py --once
--seconds 2`, `LOG_LEVEL=DEBUG make run`, `login-producer`, `login-producer --help`, `processed: N`.

```yaml
make: not-a-command
```
"""


def test_the_parser_reads_blocks_prose_tables_and_wrapped_spans() -> None:
    found = [(s.command, s.section, s.where) for s in readme.shown(SAMPLE)]
    assert found == [
        ("make demo DURATION=30", "intro", "prose"),
        ("make run", "intro", "block"),
        ("make tools cluster", "intro", "block"),
        ("make kafka-up KAFKA_SECURITY=sasl_ssl", "Local pipeline (no cluster)", "prose"),
        (".venv/bin/python scripts/live_view.py --once --seconds 2", "Local pipeline (no cluster)", "prose"),
        ("LOG_LEVEL=DEBUG make run", "Local pipeline (no cluster)", "prose"),
        ("login-producer --help", "Local pipeline (no cluster)", "prose"),
    ]
    assert readme.make_targets("LOG_LEVEL=DEBUG make tools cluster X=1") == ["tools", "cluster"]
    assert readme.make_variables("make bench BENCH_QUICK=1") == {"BENCH_QUICK": "1"}


def test_a_command_added_to_the_readme_without_a_test_fails_the_tier() -> None:
    text = readme.README.read_text() + "\nNew: `make frobnicate FAST=1`.\n"
    added = sorted(set(untested(text)) - set(untested()))
    assert len(added) == 1, added
    assert added[0].startswith("`make frobnicate FAST=1` (README.md line")
