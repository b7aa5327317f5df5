@p2 @observability
Feature: Health versus readiness on every daemon
  /health says the process is alive; /ready says it can do its job now, naming each check in its
  JSON body (200 when all pass, 503 with the failing ones otherwise).

  Scenario: A worker is alive while loading but ready only once its model is loaded
    Given daemons start with RBEE_FAULTS set to "slow-load=3000"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    When a worker for the tiny model with 1 slot starts
    Then the worker answers /health with 200 while /ready answers 503 "NOT_READY" failing "model_loaded"
    And the worker's /ready answers 200 with the checks "model_loaded, accepting, slot_usable" within 20 seconds
    And the worker's /v1/ready answers 200 as well

  Scenario: A worker whose only slot is busy is not ready for more work
    Given a worker serving the tiny model with 1 slot
    And a long generation is streaming from the worker
    Then the worker's /ready answers 503 "NOT_READY" failing "slot_usable"
    And the worker answers /health with 200

  Scenario: The hive is ready when its catalog is writable and its supervisor runs
    Given a hive on free loopback ports
    Then the hive's /ready answers 200 with the checks "catalog_writable, supervisor_running"
    When the hive's models folder is replaced by a plain file
    Then the hive's /ready answers 503 "NOT_READY" failing "catalog_writable"
    And the hive answers /v1/health with 200

  Scenario: The queen is ready when it can start its local hive, before any hive runs
    Given a queen on free loopback ports
    Then the queen's /ready answers 200 with the checks "node_registry, hive_available, accepting"
    And the queen's readiness says a hive can be started on "localhost"

  Scenario: A queen without a local hive and without nodes is alive but not ready
    Given a queen on free loopback ports started with "--no-local-hive"
    Then the queen's /ready answers 503 "NOT_READY" failing "hive_available"
    And the queen answers /health with 200
