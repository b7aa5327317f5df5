@p2 @chaos
Feature: Chaos experiments against a real cluster
  Each experiment (chaos/experiments.py) injects one fault while clients stream through a real
  queen, hive and workers, and gives its own verdict: every client gets a complete answer or a
  structured error, the cluster serves again within 20 s, and no process outlives it.

  Scenario: A worker killed mid-stream costs at most a WORKER_CRASHED event and is replaced
    When the chaos experiment "worker-killed-mid-stream" runs
    Then its verdict is PASS

  Scenario: A frozen hive is routed around with NODE_STALE and serves again when it resumes
    When the chaos experiment "hive-frozen" runs
    Then its verdict is PASS

  Scenario: A queen killed with SIGKILL takes its hive and workers with it and a new queen serves
    When the chaos experiment "queen-killed" runs
    Then its verdict is PASS
