@p0 @worker
Feature: Worker slots, readiness and cancellation
  A worker runs one generation per slot: with the default batched engine every slot is a sequence
  of one llama context advanced together, with the simple engine a context and thread of its own.

  Scenario: The worker reports loading progress while it loads, then readiness
    Given daemons start with RBEE_FAULTS set to "slow-load-step=200"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a worker serving the tiny model with 1 slot that is still loading it
    Then the worker's loading progress stream shows it loading, then ends with "ready"
    And the worker's readiness check answers 200

  Scenario: A worker whose slots are all busy answers 503 ALL_SLOTS_BUSY
    Given a worker serving the tiny model with 1 slot
    And a long generation is streaming from the worker
    When I post an inference to the worker
    Then the answer is status 503 with error code "ALL_SLOTS_BUSY" and a correlation id
    And the answer has a Retry-After header

  Scenario: A client that disconnects stops its generation and frees the slot
    Given a worker serving the tiny model with 1 slot
    And a long generation is streaming from the worker
    When the client disconnects
    Then the worker reports 1 free slot of 1 within 1 second
    And the worker serves a new request afterwards

  Scenario: Cancelling a task by id stops it and frees the slot
    Given a worker serving the tiny model with 1 slot
    And a long generation is streaming from the worker
    When I cancel that task at the worker
    Then the stream ends with stop reason "cancelled"
    And the worker reports 1 free slot of 1 within 1 second

  Scenario: Health checks stay fast while tokens are generated
    Given a worker serving the tiny model with 1 slot
    And a long generation is streaming from the worker
    Then 20 health checks in a row each answer within 100 ms
