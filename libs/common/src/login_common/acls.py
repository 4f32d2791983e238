"""The least-privilege Kafka ACLs of each service, defined once.

The local SASL_SSL broker (login_devtools/kafka_security.py) grants exactly these, and the Strimzi KafkaUsers
(k8s/kafka/users.yaml) must list the same rules: tests/chart/test_security_manifests.py compares them.
Names follow the Strimzi KafkaUser schema (``spec.authorization.acls[]``): resource ``type`` topic, group,
transactionalId or cluster; ``patternType`` literal or prefix; operations in Kafka's PascalCase names.

The consumer owns every topic, group and transactional id that starts with ``<GROUP_ID>-`` (the dash
included: ``login-consumerz-...`` belongs to someone else), and the group ``<GROUP_ID>`` itself: its detector
state (``<GROUP_ID>-detector-state``), the network stage's repartition and state topics
(``<GROUP_ID>-network-repartition``, ``<GROUP_ID>-network-state``) and whatever internal topic it adds
later, its restore reader's group (``<GROUP_ID>-restore``) and its transactional ids
(``<GROUP_ID>-<hostname>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ResourceType = Literal["topic", "group", "transactionalId", "cluster"]
PatternType = Literal["literal", "prefix"]

# Operations, as the Kafka ACL API and Strimzi name them.
READ: Final = "Read"
WRITE: Final = "Write"
CREATE: Final = "Create"
DELETE: Final = "Delete"
DESCRIBE: Final = "Describe"
DESCRIBE_CONFIGS: Final = "DescribeConfigs"
IDEMPOTENT_WRITE: Final = "IdempotentWrite"


@dataclass(frozen=True, order=True)
class Acl:
    """Allow ``operations`` on one resource (by exact name or by name prefix)."""

    resource: ResourceType
    name: str  # "kafka-cluster" for the cluster
    pattern: PatternType
    operations: tuple[str, ...]

    def rules(self) -> set[tuple[str, str, str, str]]:
        """One (resource, name, pattern, operation) per operation: the unit two ACL lists are compared in."""
        return {(self.resource, self.name, self.pattern, op) for op in self.operations}


CLUSTER: Final = "kafka-cluster"


def producer_acls(input_topic: str = "user-login") -> list[Acl]:
    """login-producer: write the raw events, idempotently. Nothing else (no read, no group)."""
    return [
        Acl("topic", input_topic, "literal", (WRITE, DESCRIBE)),
        Acl("cluster", CLUSTER, "literal", (IDEMPOTENT_WRITE,)),
    ]


def consumer_acls(
    input_topic: str = "user-login",
    output_topic: str = "processed-logins",
    dlq_topic: str = "user-login-dlq",
    group_id: str = "login-consumer",
) -> list[Acl]:
    """login-consumer: read the raw events, write results and dead letters, own its GROUP_ID namespace."""
    return [
        Acl("topic", input_topic, "literal", (READ, DESCRIBE)),
        Acl("topic", output_topic, "literal", (WRITE, DESCRIBE)),
        Acl("topic", dlq_topic, "literal", (WRITE, DESCRIBE)),
        # internal topics: <GROUP_ID>-detector-state, -network-repartition, -network-state, ...; Delete is
        # what DeleteRecords needs: the consumer purges what it consumed of its repartition topic
        Acl("topic", f"{group_id}-", "prefix", (READ, WRITE, CREATE, DELETE, DESCRIBE, DESCRIBE_CONFIGS)),
        # the group itself, and <GROUP_ID>-restore (READ implies DESCRIBE); the prefix ends with "-" so
        # that another consumer's group "<GROUP_ID>z..." is not this user's
        Acl("group", group_id, "literal", (READ,)),
        Acl("group", f"{group_id}-", "prefix", (READ,)),
        # exactly-once: TRANSACTIONAL_ID defaults to <GROUP_ID>-<hostname> (and must start with it)
        Acl("transactionalId", f"{group_id}-", "prefix", (WRITE, DESCRIBE)),
        Acl("cluster", CLUSTER, "literal", (IDEMPOTENT_WRITE,)),
    ]


def check_acls(
    input_topic: str = "user-login",
    output_topic: str = "processed-logins",
    dlq_topic: str = "user-login-dlq",
) -> list[Acl]:
    """The pipeline check (``helm test``, ``make e2e``): send marked events, read them back."""
    return [
        Acl("topic", input_topic, "literal", (WRITE, DESCRIBE)),
        Acl("topic", output_topic, "literal", (READ, DESCRIBE)),
        Acl("topic", dlq_topic, "literal", (READ, DESCRIBE)),
        Acl("group", "pipeline-check-", "prefix", (READ,)),
        Acl("cluster", CLUSTER, "literal", (IDEMPOTENT_WRITE,)),
    ]


def kafdrop_acls() -> list[Acl]:
    """Kafdrop, the operators' read-only UI: browse every topic and group, change nothing."""
    return [
        Acl("topic", "*", "literal", (READ, DESCRIBE, DESCRIBE_CONFIGS)),
        Acl("group", "*", "literal", (DESCRIBE,)),
        Acl("cluster", CLUSTER, "literal", (DESCRIBE, DESCRIBE_CONFIGS)),
    ]


def rules(acls: list[Acl]) -> set[tuple[str, str, str, str]]:
    out: set[tuple[str, str, str, str]] = set()
    for acl in acls:
        out |= acl.rules()
    return out
