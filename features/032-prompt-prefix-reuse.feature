@p1 @prefix
Feature: Prompt-prefix reuse
  Chat clients resend the whole conversation every turn. A worker keeps the KV cells of finished
  requests and starts a prompt from the longest prefix it holds, decoding only the rest, and the
  queen sends a conversation's next turn to the worker that served the turn before.

  Scenario: A chat's next turn through the queen reuses the prompt its worker has cached
    Given a queen on free loopback ports
    When the openai client sends the first turn of a chat to the tiny model
    And the openai client sends the next turn of that chat with the answer appended
    Then the next turn's usage says at least the first turn's prompt tokens less one were cached
    And the first turn's usage says at most 1 prompt token was cached

  Scenario: The worker's metrics count the prompt tokens it reused and the ones it decoded
    Given a queen on free loopback ports
    When the openai client sends the first turn of a chat to the tiny model
    And the openai client sends the next turn of that chat with the answer appended
    Then the worker's reused prompt tokens are the cached tokens both turns reported
    And the worker's decoded prompt tokens are both turns' prompt tokens less the cached ones

  Scenario: The next turn goes to the worker holding its prefix though another worker is less busy
    Given daemons start with RBEE_GPU_MAX_REPLICAS set to "2"
    And daemons start with RBEE_GPU_REPLICA_AFTER_WAIT_S set to "0.2"
    And daemons start with RBEE_PREFIX_AFFINITY_SLACK set to "0.5"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_FAULTS set to "slow=20"
    And a queen on free loopback ports whose workers have 2 slots
    And the queen runs 2 idle workers of the tiny model
    When a native task runs the first turn of a conversation
    And a long native task continuing that conversation holds a slot
    And a native task runs the next turn of that conversation
    Then the long task and the next turn ran on the first turn's worker while the other worker was idle
    And the next turn reused at least the first turn's prompt tokens less one

  Scenario: The next turn goes to the other worker when the one holding its prefix is full
    Given daemons start with RBEE_GPU_MAX_REPLICAS set to "2"
    And daemons start with RBEE_GPU_REPLICA_AFTER_WAIT_S set to "0.2"
    And daemons start with RBEE_PREFIX_AFFINITY_SLACK set to "0.5"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_FAULTS set to "slow=20"
    And a queen on free loopback ports whose workers have 2 slots
    And the queen runs 2 idle workers of the tiny model
    When a native task runs the first turn of a conversation
    And 2 long native tasks continuing that conversation hold slots
    And a native task runs the next turn of that conversation
    Then the long tasks ran on the first turn's worker and the next turn on the other worker
