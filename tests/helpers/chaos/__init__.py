"""The chaos battery's harness: a real deployment, load, seeded faults, and invariant checks.

    deployment.py   the instance under test (config, supervisor process, DB proxy) and direct
                    read-only views of its storage
    load.py         client threads submitting runs over gRPC and through ``dagctl``; the ledger
                    of acknowledged submissions
    faults.py       the seeded fault plan and the injector that carries it out
    invariants.py   the invariants as pure functions of what storage and the processes show
    sampler.py      the continuous checks (a thread) and the ``daemons status`` prober
    prober.py       the prober itself, a separate process so the test's own threads cannot
                    slow down what it measures
    scenario.py     one chaos run from start to verdict
    report.py       violations and the fault log, every message naming the seed
    two_hosts.py    the two-host mode: a leader and a standby on two test hosts, partitions and
                    supervisor faults, and the one-leader-at-a-time check

docs/chaos.md describes the faults, the invariants, and how to replay a seed.
"""
