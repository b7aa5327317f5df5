@p1 @lifecycle @heartbeats
Feature: Heartbeats from workers to hives to the queen
  The queen learns about workers from hive heartbeats, stops routing to a hive that goes
  quiet and routes again when it comes back; registries rebuild after restarts.

  Scenario: The queen stops routing to a hive that missed its heartbeats and recovers when they return
    Given a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When the queen's hive is frozen with SIGSTOP
    Then the queen lists the hive as stale within 3 seconds
    And a native task for the tiny model is refused with 503 "NODE_STALE"
    When the queen's hive is resumed with SIGCONT
    Then the queen lists the hive as fresh within 3 seconds
    And a native task for the tiny model streams to its end

  Scenario: A restarted queen rebuilds its worker registry from hive heartbeats
    Given a queen and a separately started hive that heartbeats to it
    And a worker for the tiny model has served a task through the queen
    When the queen is killed with SIGKILL and started again on the same ports
    Then the new queen lists the worker within 2 seconds without being asked to route anything

  Scenario: A restarted hive stops the workers its previous run left behind
    Given daemons start with RBEE_FAULTS set to "stall-after=2"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_STALL_TIMEOUT_S set to "600"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    And a generation is started on the worker
    When I kill the hive with SIGKILL but leave its stuck worker running
    And a new hive starts on the same data folder
    Then the stuck worker from the previous run is gone within 10 seconds
    And the new hive's log says it stopped a worker left by a previous run
