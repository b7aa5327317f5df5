@p0 @inference
Feature: The queen refuses work beyond its workers' slots
  Until the admission queue exists, a request for a model whose workers are all busy is
  refused at once with a retry hint instead of waiting.

  Scenario: When every slot of the model's worker is busy the queen answers 503 ALL_SLOTS_BUSY
    Given a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When another native task for the tiny model is posted
    Then the answer is status 503 with error code "ALL_SLOTS_BUSY" and a correlation id
    And the answer has a Retry-After header
