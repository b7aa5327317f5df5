@p0 @security
Feature: Named API keys: scopes, node keys, limits, usage and revocation
  The queen keeps named keys (only a hash of each): a key is shown once, works only on the routes
  of its scopes and the models it names, within its own limits; revoking it takes effect at
  once; its name, never the key, is what audit records, logs and usage show. The queen's token
  file stays the bootstrap admin key, and each hive it starts reports with its own node key.

  Background:
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports

  Scenario: A key made with rbee keys create is printed once and streams a chat completion
    When I run rbee keys create "alice" --scope inference with the queen's token
    Then the command printed a key and `rbee keys list` shows "alice" only by its fingerprint
    And the queen's key store on disk does not hold the key
    And the key "alice" streams a chat completion through the openai client

  Scenario: A revoked key is refused within a second
    Given a key "bob" with scopes "inference"
    And the key "bob" lists the models
    When I run rbee keys revoke "bob" with the queen's token
    Then within 1 second the key "bob" is refused with 401 "API_KEY_REVOKED"
    And rbee keys list shows "bob" as revoked

  Scenario: An expired key is refused with API_KEY_EXPIRED
    Given a key "carol" with scopes "inference" that expires in 2 seconds
    And the key "carol" lists the models
    When 2.5 seconds pass
    Then the key "carol" is refused with 401 "API_KEY_EXPIRED"

  Scenario: Each queen route admits exactly the scopes of this table
    Given a key "user" with scopes "inference"
    And a key "operator" with scopes "admin"
    And a key "reporter" with scopes "node"
    Then the queen answers each route to the keys as this table says
      | method | path                         | user   | operator | reporter |
      | GET    | /health                      | ok     | ok       | ok       |
      | GET    | /ready                       | denied | ok       | denied   |
      | GET    | /metrics                     | denied | ok       | denied   |
      | GET    | /openapi.json                | ok     | ok       | denied   |
      | GET    | /v2/status                   | denied | ok       | denied   |
      | GET    | /v2/logs                     | denied | ok       | denied   |
      | GET    | /ui                          | denied | ok       | denied   |
      | GET    | /ui/status                   | denied | ok       | denied   |
      | POST   | /v2/tasks                    | ok     | denied   | denied   |
      | DELETE | /v2/tasks/{task_id}          | ok     | denied   | denied   |
      | GET    | /v2/workers/list             | denied | ok       | denied   |
      | POST   | /v2/workers/shutdown         | denied | ok       | denied   |
      | POST   | /v2/models/pull              | denied | ok       | denied   |
      | GET    | /v2/models/show              | denied | ok       | denied   |
      | GET    | /v2/prometheus/targets       | denied | ok       | denied   |
      | POST   | /v2/heartbeat                | denied | denied   | ok       |
      | GET    | /v1/models                   | ok     | denied   | denied   |
      | GET    | /v1/models/{model}           | ok     | denied   | denied   |
      | POST   | /v1/chat/completions         | ok     | denied   | denied   |
      | POST   | /v1/completions              | ok     | denied   | denied   |
      | POST   | /v1/embeddings               | ok     | denied   | denied   |
      | POST   | /v2/registry/beehives/add    | denied | ok       | denied   |
      | GET    | /v2/registry/beehives/list   | denied | ok       | denied   |
      | POST   | /v2/registry/beehives/remove | denied | ok       | denied   |
      | POST   | /v2/keys                     | denied | ok       | denied   |
      | GET    | /v2/keys                     | denied | ok       | denied   |
      | GET    | /v2/keys/usage               | denied | ok       | denied   |
      | DELETE | /v2/keys/{name}              | denied | ok       | denied   |
    And every route the queen registers is in that table

  Scenario: The local hive reports with its own node key, which is refused on inference and admin routes
    When I stream a native task through the queen with the queen's token
    Then the local hive was given a key for the queen that is not the queen's token
    And rbee keys list shows that key as "node-localhost" with scope node
    And with the hive's key GET /v1/models on the queen answers 403 "FORBIDDEN_SCOPE"
    And with the hive's key GET /v2/status on the queen answers 403 "FORBIDDEN_SCOPE"
    And the queen took 2 more heartbeats from the hive and refused none
    And with the hive's key a heartbeat for another hive's URL answers 403 "NODE_KEY_MISMATCH"

  Scenario: A key limited to one model lists only that model and is refused another
    Given a key "narrow" with scopes "inference" for the tiny model only
    When I stream a native task through the queen with the queen's token
    Then the key "narrow" lists only the tiny model, of the models the queen's token lists
    And a task of the key "narrow" for the model "default" is refused with 403 "MODEL_NOT_ALLOWED"
    And a task of the key "narrow" for the tiny model streams to its end

  Scenario: A key over its requests per minute gets 429 with Retry-After and the limit it hit
    Given a key "slow" with scopes "inference" and rpm 2
    When the key "slow" lists the models 2 times
    Then the key "slow" is refused with 429 "RATE_LIMITED" naming the limit "requests per minute"
    And the answer has a Retry-After of at least 1 second
    And a fresh key "user2" with scopes "inference" lists the models

  Scenario: A key over its concurrency gets 429 while its own stream runs and another key is served
    Given a key "single" with scopes "inference" and concurrency 1
    And a key "other" with scopes "inference"
    When the key "single" starts a long native task
    Then a second task of the key "single" is refused with 429 "RATE_LIMITED" naming the limit "requests at once"
    And a task of the key "other" streams to its end
    And once the first task of "single" is cancelled, a task of the key "single" streams to its end

  Scenario: A key cannot cancel another key's task, only its own
    Given a key "first" with scopes "inference"
    And a key "second" with scopes "inference"
    When the key "first" starts a long native task
    Then the key "second" cancelling that task gets 404 "TASK_NOT_FOUND" and the task goes on
    And the key "first" cancelling that task gets 204 and its stream ends with stop reason "cancelled"

  Scenario: A key over its tokens per minute is refused after the request that crossed the limit
    Given a key "thrifty" with scopes "inference" and tokens per minute 10
    When the key "thrifty" completes a prompt of 16 tokens at most
    Then the key "thrifty" is refused with 429 "RATE_LIMITED" naming the limit "tokens per minute"

  Scenario: Usage per key name matches what the clients were told, in rbee keys usage and in the metrics
    Given a key "counted" with scopes "inference"
    When the key "counted" completes a prompt of 16 tokens at most, 2 times
    Then rbee keys usage "counted" shows 2 requests and the prompt and completion tokens the answers reported
    And the queen's metric rbee_queen_key_tokens_total for "counted" shows the same tokens

  Scenario: Audit records and access lines carry the key's name, never a key
    Given a key "traced" with scopes "inference"
    When the key "traced" completes a prompt of 16 tokens at most
    Then the queen's audit records of that task carry the key name "traced"
    And the queen's access line of that request carries the key name "traced"
    And no log, command line or audit record holds any key made in this scenario

  Scenario Outline: A key the queen cannot make is refused with 400 naming the field
    When I ask the queen for a key with <body>
    Then the answer is 400 "<code>" naming the field "<field>"

    Examples:
      | body                                                         | code             | field      |
      | {"name": "Bad Name", "scopes": ["inference"]}                | INVALID_REQUEST  | name       |
      | {"name": "x", "scopes": ["root"]}                            | INVALID_REQUEST  | scopes     |
      | {"name": "x", "scopes": []}                                  | INVALID_REQUEST  | scopes     |
      | {"name": "x", "scopes": ["inference"], "budget": 5}          | INVALID_REQUEST  | budget     |
      | {"name": "x", "scopes": ["inference"], "weight": 0}          | INVALID_REQUEST  | weight     |
      | {"name": "x", "scopes": ["inference"], "expires_at": "2020-01-01T00:00:00Z"} | INVALID_REQUEST | expires_at |
      | {"name": "bootstrap", "scopes": ["inference"]}               | INVALID_KEY_NAME | name       |
