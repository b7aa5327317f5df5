@p2 @lifecycle @concurrency
Feature: Registries and slots stay correct under parallel load
  No slot is ever oversubscribed and no registry update is lost, whatever arrives at once.

  Scenario: 100 parallel requests never oversubscribe a worker's slots
    Given daemons start with RBEE_RATE_LIMIT_PER_S set to "0"
    And a queen on free loopback ports whose workers have 4 slots
    And a worker for the tiny model has served a task through the queen
    When 100 native tasks of 16 tokens are posted at the same time
    Then every task streamed to its end, those beyond the slots after waiting in the admission queue
    And the worker never ran more than 4 generations at once
    And the queen's worker reports all slots free within 2 second
    And the queen counts no request in flight

  Scenario: 100 hives registering at once are all recorded with their workers
    Given a queen on free loopback ports
    When 100 hives send heartbeats with 3 workers each at the same time
    Then the queen lists 100 hives and 300 workers
