@p1 @security
Feature: Rate limits and quotas at the queen
  Each client token has a request rate and a cap on requests in flight; an address that keeps
  failing authentication or validation is throttled. Excess gets 429 RATE_LIMITED.

  Background:
    Given token files for the queen, the hive and the worker

  Scenario: Requests over a token's rate get 429 with Retry-After
    Given daemons start with RBEE_RATE_LIMIT_PER_S set to "0.5"
    And daemons start with RBEE_RATE_LIMIT_BURST set to "3"
    And a queen with those tokens on free loopback ports
    When I call GET /v2/workers/list on the queen 5 times with the queen's token
    Then the first 3 answers are 200 and the rest 429 "RATE_LIMITED" with a Retry-After of at least 1 second
    And the queen's audit log has a "rate.limited" record
    And GET /health on the queen answers 200 without a token

  Scenario: A token over its concurrent-request cap gets 429 while its stream runs
    Given daemons start with RBEE_MAX_CONCURRENT_PER_CLIENT set to "1"
    And a queen with those tokens on free loopback ports
    And a long native task is streaming through the queen with the queen's token
    When I call GET /v2/workers/list on the queen 1 times with the queen's token
    Then the first 0 answers are 200 and the rest 429 "RATE_LIMITED" with a Retry-After of at least 1 second
    And the long task still ends with an "end" event
    And GET /v2/workers/list on the queen answers 200 with the queen's token

  Scenario: An address that keeps failing authentication is throttled, even with the right token
    Given daemons start with RBEE_FAILURE_LIMIT set to "3"
    And a queen with those tokens on free loopback ports
    When I call GET /v1/models on the queen with the token "wrong-token-0123456789abcdef" 3 times
    Then GET /v2/workers/list on the queen answers 429 with the queen's token
    And the queen's audit log has a "rate.limited" record
