@p0 @inference
Feature: Inference through the queen's native task API
  A client posts a prompt to the queen and receives the worker's tokens as they are
  produced, through a hive and a worker the queen starts on demand.

  Background:
    Given a queen on free loopback ports

  Scenario: A native task streams started, token and end events in order
    When I post a native task for the tiny model with prompt "Once upon a time" and 24 max tokens
    Then the answer is an event stream with status 200
    And the first event is "started" and names the task
    And token events follow with increasing indexes
    And the last event is "end" with between 1 and 24 tokens out
    And the stream closes with [DONE]

  Scenario: Cold start: the queen starts the local hive and a worker on the first request
    Given no hive answers on the queen's hive port
    When I post a native task for the tiny model with prompt "Hello" and 8 max tokens
    Then the answer is an event stream with status 200
    And the hive lists 1 worker for the tiny model in state "idle"

  Scenario: Warm start: a second request reuses the idle worker
    When I post a native task for the tiny model with prompt "Hello" and 8 max tokens
    And I post a native task for the tiny model with prompt "Hello again" and 8 max tokens
    Then both tasks ran on the same worker
    And the hive lists 1 worker for the tiny model in state "idle"

  Scenario: The same seed gives the same tokens
    When I post a native task for the tiny model with prompt "Seeded" and 16 max tokens and seed 42
    And I post a native task for the tiny model with prompt "Seeded" and 16 max tokens and seed 42
    Then both tasks produced the same text

  Scenario Outline: Bad input is refused with a structured error and the queen keeps serving
    When I post the native task body <body>
    Then the answer is status <status> with error code "<code>" and a correlation id
    And the queen still answers its health check

    Examples:
      | body                                                             | status | code            |
      | {"model": "tiny", "prompt": "x", "max_tokens": -5}               | 400    | INVALID_REQUEST |
      | {"model": "tiny", "prompt": "x", "temperature": "hot"}           | 400    | INVALID_REQUEST |
      | {"model": "tiny", "prompt": "bell \u0007 in prompt"}             | 400    | INVALID_REQUEST |
      | {"model": "../../etc/passwd", "prompt": "x"}                     | 400    | INVALID_REQUEST |
      | {"model": "no-such-model", "prompt": "x"}                        | 404    | MODEL_NOT_FOUND |
      | {"model": "tiny", "prompt": "x", "node": "elsewhere"}            | 404    | NODE_NOT_FOUND  |
      | not json at all                                                  | 400    | INVALID_JSON    |

