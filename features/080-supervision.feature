@p1 @lifecycle @supervision
Feature: The hive supervises its workers: crashes, hangs, restarts, idle unload
  One owner task per worker notices a crash from the process exit itself, a hang from
  missed heartbeats, a stalled decode loop or an overlong load, force-kills hung workers
  (SIGTERM, grace, SIGKILL) with the reason logged, and restarts by policy.

  Scenario: A killed worker is noticed at once and restarted after a backoff
    Given a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I kill the worker process with SIGKILL
    Then the hive lists the worker as "crashed" or restarting within 1 seconds
    And the worker is serving again within 15 seconds with 1 restart and a new PID
    And the worker's last exit code is -9

  Scenario: A worker that crashes at every load is restarted with growing delays until its circuit opens
    Given daemons start with RBEE_FAULTS set to "crash-on-load"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_MAX_RESTARTS set to "3"
    And daemons start with RBEE_RESTART_JITTER set to "0"
    And a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model
    Then the hive lists no worker within 15 seconds
    And the hive log shows restart delays of 0.20s, 0.40s and 0.80s
    And the hive log says the circuit is open
    When I ask the hive to spawn a worker for the tiny model
    Then the answer is status 503 with error code "CIRCUIT_OPEN" and a correlation id

  Scenario: A worker whose decode loop stalls is force-killed with the reason logged, then restarted
    Given daemons start with RBEE_FAULTS set to "stall-after=5"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When a generation is started on the worker
    Then the worker is serving again within 20 seconds with 1 restart and a new PID
    And the worker's last kill reason is "decode loop stalled"
    And the hive log says the worker was hung because "decode loop stalled"

  Scenario: A worker that stops sending heartbeats is killed as hung
    Given daemons start with RBEE_FAULTS set to "no-heartbeat"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    Then the worker is serving again within 20 seconds with 1 restart and a new PID
    And the worker's last kill reason mentions "missed 3 heartbeats"

  Scenario: A worker that loads for longer than the loading timeout is killed as hung
    Given daemons start with RBEE_FAULTS set to "slow-load=60000"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_LOADING_TIMEOUT_S set to "1"
    And daemons start with RBEE_MAX_RESTARTS set to "0"
    And a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model
    Then the hive lists no worker within 15 seconds
    And the hive log says the worker was hung because "still loading after 1s"

  Scenario: An idle worker is unloaded after the idle timeout
    Given daemons start with RBEE_IDLE_UNLOAD_S set to "1"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    Then the hive lists no worker within 6 seconds
    And no process the hive started is still running

  Scenario: Fault injection is refused unless explicitly enabled
    When I start a worker with RBEE_FAULTS set but RBEE_ALLOW_FAULTS unset
    Then the worker exits with code 2 and says fault injection is off
