@p1 @inference @admission @keys
Feature: Weighted fair queueing between API keys
  The requests waiting in a model's admission queue are served by deficit round-robin across the
  API keys they came with, each key by its weight: a key that keeps the queue full gets its share
  of the slots and no more, so another key's requests are not left waiting behind its backlog.

  Scenario: A key flooding the queue does not starve another key
    Given token files for the queen, the hive and the worker
    And daemons start with RBEE_RATE_LIMIT_PER_S set to "0"
    And a queen with those tokens on free loopback ports whose workers have 1 slot
    And the inference key "flood" of weight 1, created with the queen's token
    And the inference key "trickle" of weight 1, created with the queen's token
    And the key "flood" keeps 40 native tasks of the tiny model waiting in the queue
    When the key "trickle" sends 4 native tasks of the tiny model, one a second
    Then every task the key "trickle" sent streamed to its end
    And each was served ahead of at least 3 in 4 of the flood's tasks waiting when it was sent

  Scenario: A key of weight 3 is served three tasks for each task of a key of weight 1
    Given token files for the queen, the hive and the worker
    And daemons start with RBEE_RATE_LIMIT_PER_S set to "0"
    And a queen with those tokens on free loopback ports whose workers have 1 slot
    And the inference key "heavy" of weight 3, created with the queen's token
    And the inference key "light" of weight 1, created with the queen's token
    And the keys "heavy" and "light" each keep 20 native tasks of the tiny model queued
    When the tasks served are counted for 3 seconds
    Then the key "heavy" was served 2.4 to 3.6 tasks for each one of the key "light" in them
