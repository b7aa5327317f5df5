@p0 @security
Feature: Structured errors everywhere, and an API description that holds
  Every failure is a JSON error with an UPPER_SNAKE code and a correlation id; a bug answers
  500 INTERNAL without a traceback and the daemon keeps serving.

  Scenario: A fault inside a handler answers 500 INTERNAL without a traceback
    Given daemons start with RBEE_FAULTS set to "handler-error"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a worker serving the tiny model with 1 slot
    When I post an inference request straight to the worker
    Then the answer is status 500 with error code "INTERNAL" and a correlation id
    And the answer shows no traceback
    And the worker's log has the traceback under that correlation id
    And the worker still answers its health check

  Scenario Outline: A body over 1 MiB is refused with 413 by the <daemon>
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    And I stream a native task through the queen with the queen's token
    When I post 2 MiB to <path> on the <daemon> with its token
    Then the answer is status 413 with error code "BODY_TOO_LARGE" and a correlation id

    Examples:
      | daemon | path              |
      | queen  | /v2/tasks         |
      | hive   | /v1/workers/spawn |

  Scenario: The queen's OpenAPI document describes every route it registers
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    Then GET /openapi.json on the queen lists every route the queen registers

  Scenario: A schemathesis run against the live queen finds no 5xx and no schema violation
    Given token files for the queen, the hive and the worker
    And daemons start with RBEE_RATE_LIMIT_PER_S set to "0"
    And daemons start with RBEE_FAILURE_LIMIT set to "0"
    And a queen with those tokens on free loopback ports
    When schemathesis runs against the queen's /openapi.json with the queen's token
    Then schemathesis reports no failure and ran at least 50 cases
    And the queen still answers its health check
