@p2 @lifecycle @cancellation
Feature: Cancelling running work
  An explicit cancel or a client that goes away stops generation within a second and
  frees the slot, as the worker's own slot count shows.

  Background:
    Given a queen on free loopback ports

  Scenario: DELETE /v2/tasks stops a running task, frees its slot, and is idempotent
    Given a long native task is streaming through the queen
    When I cancel that task at the queen
    Then the answer is status 204
    And the stream ends with stop reason "cancelled"
    And the queen's worker reports all slots free within 1 second
    When I cancel that task at the queen
    Then the answer is status 204

  Scenario: Cancelling a task the queen never ran is a 404
    When I cancel task "0123456789abcdef" at the queen
    Then the answer is status 404 with error code "TASK_NOT_FOUND" and a correlation id

  Scenario: An OpenAI streaming client that disconnects frees the worker's slot
    Given a long OpenAI chat stream is being read through the queen
    When the client disconnects
    Then the queen's worker reports all slots free within 1 second
    And the queen counts no request in flight
