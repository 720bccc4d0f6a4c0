"""The suite registry: the one place a new suite is added (name -> Suite, run in this order by `all`)."""

from __future__ import annotations

from bench.suite import Suite
from bench.suites import (context, indexcost, latency, resumable, scaleout, scaling, search, soak, throughput,
                          toolstep, turncost)

SUITES: dict[str, Suite] = {
    "latency": Suite("latency", "TTFT, inter-chunk and e2e of direct/passthrough/agent, interleaved",
                     latency.run, latency.plot),
    "throughput": Suite("throughput", "requests/s at concurrency 1..128, zero-delay simulator",
                        throughput.run, throughput.plot),
    "scaling": Suite("scaling", "added TTFT and RSS vs stored history and agent count", scaling.run, scaling.plot),
    "toolstep": Suite("toolstep", "cost of one server memory-edit step between two upstream calls", toolstep.run),
    "search": Suite("search", "archival search latency at 1k-100k passages; added TTFT while indexing", search.run,
                    search.plot),
    "context": Suite("context", "added TTFT around compaction (high-water, waiting turn); token-count cost",
                     context.run, context.plot),
    "turncost": Suite("turncost", "CPU per agent turn at 50/500/5,000 messages in context; per passthrough request",
                      turncost.run),
    "indexcost": Suite("indexcost", "recall indexer CPU per turn and recall search latency at 1k/100k/1M messages",
                       indexcost.run),
    "scaleout": Suite("scaleout", "agent turns/s and CPU per turn of --workers 1 and 2 on PostgreSQL + Redis",
                      scaleout.run),
    "resumable": Suite("resumable", "added TTFT and e2e of resumable agent turns (events via Redis) vs plain ones",
                       resumable.run),
    "soak": Suite("soak", "memproxy RSS over 20,000 turns on 200 agents: flat after warm-up?", soak.run, soak.plot),
}
