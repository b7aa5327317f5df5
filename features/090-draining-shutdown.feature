@p0 @lifecycle @shutdown
Feature: Cascading, draining shutdown
  A stop first refuses new work with 503 DRAINING, lets in-flight streams finish within the
  drain budget, then stops the hive, which stops its workers; force-kill after the budget.

  Scenario: SIGTERM lets an in-flight stream finish while new tasks get 503 DRAINING
    Given daemons start with RBEE_FAULTS set to "slow=5"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And `rbee up` is running on free loopback ports
    And a native task of 300 tokens is streaming through the queen
    When I send SIGTERM to `rbee up`
    And another native task for the tiny model is posted
    Then the answer is status 503 with error code "DRAINING" and a correlation id
    And the streaming task ends with stop reason "max_tokens" and 300 tokens
    And `rbee up` exits with code 0 within 20 seconds of the signal
    And no process it started is still running

  Scenario: A stream that outlasts the drain budget is cut and everything still stops
    Given daemons start with RBEE_DRAIN_BUDGET_S set to "1"
    And `rbee up` is running on free loopback ports
    And a long native task is streaming through the queen
    When I send SIGTERM to `rbee up`
    Then the stream is cut within 3 seconds of the signal, before its end
    And `rbee up` exits with code 0 within 10 seconds of the signal
    And no process it started is still running

  Scenario: Ctrl+C in a terminal running `rbee up` stops everything it started
    Given `rbee up` is running on free loopback ports
    And a worker for the tiny model has served a task through it
    When I press Ctrl+C in the terminal of `rbee up`
    Then `rbee up` exits with code 0 within 20 seconds of the signal
    And no process it started is still running

  Scenario: The queen drains and stops one worker on request
    Given a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When I ask the queen to shut down that worker
    Then the answer is status 202
    And the hive lists no worker within 10 seconds
    And no process the queen started for that worker is still running

  Scenario: Shutting down an unknown worker is a 404
    Given a queen on free loopback ports
    When I ask the queen to shut down worker "w-nosuchthing"
    Then the answer is status 404 with error code "WORKER_NOT_FOUND" and a correlation id
