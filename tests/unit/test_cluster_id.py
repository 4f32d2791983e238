"""KRaft cluster ids of the local brokers (login_devtools.kafka_security.new_cluster_id).

One random base64url id in 64 starts with "-", and kafka-storage's option parser then takes it for an
option (`-t -Bb8M…`: "argument --cluster-id/-t: expected one argument": a fresh clone's three-broker
README test failed so). Kafka's own Uuid.randomUuid draws again in that case; so does this.
"""

from __future__ import annotations

import base64

from login_devtools.kafka_security import new_cluster_id


def test_no_cluster_id_starts_with_a_dash_and_each_is_a_uuid() -> None:
    ids = [new_cluster_id() for _ in range(5000)]  # ~78 would start with "-" without the redraw
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
