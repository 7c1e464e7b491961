#!/usr/bin/env python3
"""A deliberately naive external policy for `autorevert simulate --policy-cmd`.

It reverts the oldest failing commit of any signal whose three newest finished commits
failed, with no restart and no baseline: what "revert on red" costs. One JSON line in
(the state), one JSON line out (the actions); see bench/README.md for the format.
"""
import json
import sys

reverted = set()
for line in sys.stdin:
    state = json.loads(line)
    reverts = []
    for signal in state["signals"]:
        finished = [c for c in signal["commits"]
                    if any(e["status"] != "pending" for e in c["events"])]
        head = finished[:3]
        if len(head) == 3 and all(any(e["status"] == "failure" for e in c["events"]) for c in head):
            suspect = head[-1]["sha"]
            if suspect not in reverted:
                reverted.add(suspect)
                reverts.append({"sha": suspect})
    print(json.dumps({"restarts": [], "reverts": reverts}), flush=True)
