@p0 @hive
Feature: The hive spawns and tracks worker processes
  The hive starts workers as child processes, records their PIDs and ports, and notices
  at once when one exits.

  Scenario: A spawned worker loads, reports ready and is listed with its PID and port
    Given a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model
    Then the spawn answer is 202 with state "loading"
    And the hive lists the worker in state "idle" within 30 seconds
    And the listed PID is a running process serving the listed port

  Scenario: With restarts disabled, a killed worker leaves the hive's list at once
    Given daemons start with RBEE_MAX_RESTARTS set to "0"
    And a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I kill the worker process with SIGKILL
    Then the hive lists no worker within 1 seconds

  Scenario: Two workers get two different ports
    Given a hive on free loopback ports
    When I ask the hive to spawn a worker for the tiny model
    And I ask the hive to spawn a worker for the tiny model
    Then the hive lists 2 workers in state "idle" within 30 seconds on different ports

  Scenario: A model file that does not exist is refused
    Given a hive on free loopback ports
    When I ask the hive to spawn a worker for "file:///nonexistent/model.gguf"
    Then the answer is status 404 with error code "MODEL_FILE_NOT_FOUND" and a correlation id

  Scenario: A file that is not a GGUF is refused
    Given a hive on free loopback ports
    When I ask the hive to spawn a worker for a file that is not a GGUF
    Then the answer is status 400 with error code "NOT_A_GGUF" and a correlation id

  Scenario: Stopping the hive stops its workers
    Given a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I stop the hive with SIGTERM
    Then no process the hive started is still running

  Scenario: A hive killed with SIGKILL takes its workers with it
    Given a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I kill the hive with SIGKILL
    Then no process the hive started is still running

  Scenario: A worker asked to shut down exits and leaves the hive's list
    Given a hive on free loopback ports
    And the hive has a ready worker for the tiny model
    When I ask the worker to shut down through its admin endpoint
    Then the hive lists no worker within 5 seconds
    And no process the hive started is still running

  Scenario: A queen with --external-hive never starts a hive and answers 503 HIVE_UNAVAILABLE while its hive is down
    Given a queen with --external-hive and a separately started hive on its hive port
    And a worker for the tiny model has served a task through the queen
    When the separately started hive is stopped
    And another native task for the tiny model is posted
    Then the answer is status 503 with error code "HIVE_UNAVAILABLE" and a correlation id
    And no hive process runs under the queen
