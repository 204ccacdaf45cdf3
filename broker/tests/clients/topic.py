"""Create or delete a topic through the admin API (confluent-kafka), for kcat.sh.

    python topic.py create NAME PARTITIONS REPLICATION_FACTOR
    python topic.py delete NAME

Bootstrap from SKIFF_BOOTSTRAP. Exits non-zero on any error, within about 60 s.
"""

from __future__ import annotations

import os
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 30


def led_partitions(admin: AdminClient, name: str) -> int:
    md = admin.list_topics(topic=name, timeout=10).topics.get(name)
    if md is None or md.error is not None:
        return 0
    return sum(1 for p in md.partitions.values() if p.leader >= 0 and p.error is None)


def main(argv: list[str]) -> int:
    admin = AdminClient({"bootstrap.servers": os.environ["SKIFF_BOOTSTRAP"], "socket.timeout.ms": 20000})
    if len(argv) == 4 and argv[0] == "create":
        name, partitions, rf = argv[1], int(argv[2]), int(argv[3])
        admin.create_topics([NewTopic(name, partitions, rf)], request_timeout=TIMEOUT_S)[name].result(timeout=TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while led_partitions(admin, name) < partitions:
            if time.monotonic() > deadline:
                print(f"topic.py: {name} has no leader for some of its {partitions} partitions", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    if len(argv) == 2 and argv[0] == "delete":
        admin.delete_topics([argv[1]], request_timeout=TIMEOUT_S)[argv[1]].result(timeout=TIMEOUT_S)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
