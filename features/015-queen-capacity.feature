@p0 @inference @admission
Feature: The queen's admission queue holds work beyond its workers' slots
  A request for a model whose workers are all busy waits at the queen for a slot, oldest first
  among the requests of one key (fair between keys: features/335), instead of failing; the queue is bounded (429 QUEUE_FULL) and so is the wait (503 QUEUE_TIMEOUT),
  each with a retry hint. A streaming request that was already told its place in the queue (an
  SSE comment, features/028) gets a later QUEUE_TIMEOUT as an error event in its stream instead.

  Scenario: A task that finds every slot busy waits in the queue and streams once a slot is free
    Given a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When another native task for the tiny model is sent without waiting for its answer
    Then that task has no answer yet after 1 second
    And the queen's admission queue holds 1 request for the tiny model
    When I cancel that first task at the queen
    Then the waiting task streams to its end within 10 seconds
    And the queen's admission queue is empty

  Scenario: With the admission queue full the queen answers 429 QUEUE_FULL with a retry hint
    Given daemons start with RBEE_ADMISSION_QUEUE_DEPTH set to "0"
    And a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When another native task for the tiny model is posted
    Then the answer is status 429 with error code "QUEUE_FULL" and a correlation id
    And the answer has a Retry-After header

  Scenario: A request that waits longer than the admission wait limit gets 503 QUEUE_TIMEOUT
    Given daemons start with RBEE_ADMISSION_WAIT_MAX_S set to "1"
    And a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When a chat completion for the tiny model is posted without streaming
    Then the answer is status 503 with error code "QUEUE_TIMEOUT" and a correlation id
    And the answer has a Retry-After header
