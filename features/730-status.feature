@p2 @observability
Feature: rbee status
  `rbee status` shows the cluster as the queen sees it: nodes, hives, workers (state, model, slots
  busy, tokens/s, restarts) and models, as terminal tables or as JSON for scripts.

  Scenario: rbee status shows the node, hive, worker and model of a running cluster
    Given a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When I run `rbee status`
    Then it exits 0 and its tables list node "localhost", the worker in state "idle" with slots "0/2" and the tiny model

  Scenario: rbee status --json gives scripts the same picture with throughput
    Given a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When I run `rbee status --json`
    Then it exits 0 and its JSON lists 1 node, 1 fresh hive, 1 idle worker and 1 model
    And the JSON's worker shows tokens per second above 0 and 0 restarts

  Scenario: rbee status against a queen that is not running says so and exits 1
    When I run `rbee status` against a queen that is not running
    Then it exits 1 and stderr says "cannot reach the queen"

  Scenario: rbee status with a wrong token exits 1 naming INVALID_API_KEY
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I run `rbee status` with a wrong token file
    Then it exits 1 and stderr says "bearer token is not valid"
