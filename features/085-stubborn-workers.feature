@p1 @lifecycle
Feature: A worker that ignores SIGTERM is killed with SIGKILL after its stop budget, audited, and reaped
  A worker stops within its drain budget plus the SIGTERM grace; one that ignores SIGTERM (the
  test-only fault `ignore-sigterm`) gets SIGKILL then, and the hive records `worker.force_kill`.
  Workers stop in parallel, so several stubborn workers cost one budget, not one each.

  Scenario: A worker that ignores SIGTERM keeps running through its stop budget, then is killed and reaped
    Given stubborn workers with a stop budget of 2 seconds of drain and 2 of grace
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I ask the hive to stop its worker
    Then the worker process is still running 1.5 seconds after the stop began
    And the worker process is gone and reaped within 10 seconds
    And the hive's audit log has 1 "worker.force_kill" record naming the worker, its PID and a grace of 4 seconds

  Scenario: A worker that honours SIGTERM stops without a force-kill
    Given daemons start with RBEE_DRAIN_BUDGET_S set to "2"
    And daemons start with RBEE_SIGTERM_GRACE_S set to "2"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I ask the hive to stop its worker
    Then the worker process is gone and reaped within 10 seconds
    And the hive's audit log has 0 "worker.force_kill" records

  Scenario: Three workers that ignore SIGTERM are force-killed in parallel when the hive stops
    Given stubborn workers with a stop budget of 2 seconds of drain and 2 of grace
    And a hive on free loopback ports
    And the hive has 3 ready workers for the tiny model
    When I stop the hive with SIGTERM and time it
    Then the hive exited with code 0 in less than 8 seconds, twice one worker's budget
    And no process the hive started is still running
    And the hive's audit log has 3 "worker.force_kill" records
