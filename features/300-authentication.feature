@p0 @security
Feature: Bearer-token authentication on queen, hive and worker
  Each daemon has its own token. Every route but the health checks demands it, compared in
  constant time; internal calls present the callee's token; logs only show a fingerprint.

  Background:
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports

  Scenario: A request without a token is refused with MISSING_API_KEY and a Bearer challenge
    When I call GET /v1/models on the queen without a token
    Then the answer is 401 with error code "MISSING_API_KEY" and a Bearer challenge

  Scenario: A wrong token is refused with INVALID_API_KEY and is not echoed
    When I call GET /v1/models on the queen with the token "wrong-token-0123456789abcdef"
    Then the answer is 401 with error code "INVALID_API_KEY" and a Bearer challenge
    And the answer does not contain "wrong-token-0123456789abcdef"

  Scenario Outline: A malformed Authorization header is refused with INVALID_API_KEY
    When I call GET /v1/models on the queen with the Authorization header <header>
    Then the answer is 401 with error code "INVALID_API_KEY" and a Bearer challenge

    Examples:
      | header                            |
      | lowercase scheme "bearer <token>" |
      | two spaces "Bearer  <token>"      |
      | no space "Bearer<token>"          |
      | an oversize token                 |
      | a Basic scheme                    |
      | the token alone                   |

  Scenario: A control character in the Authorization header is refused before authentication
    When I call GET /v1/models on the queen with the Authorization header a control character in the token
    Then the answer is 400 and shows no traceback
    And the queen still answers its health check

  Scenario: With the right token a task streams through queen, hive and worker
    When I stream a native task through the queen with the queen's token
    Then the stream ends with an "end" event
    And the hive and the worker each refused no internal call

  Scenario: Health checks answer without a token on every daemon
    When I stream a native task through the queen with the queen's token
    Then GET /health on the queen answers 200 without a token
    And GET /v1/health on the hive answers 200 without a token
    And GET /health on the worker answers 200 without a token

  Scenario: The hive and the worker refuse the queen's token and accept only their own
    When I stream a native task through the queen with the queen's token
    Then GET /v1/workers/list on the hive answers 401 with the queen's token
    And GET /v1/workers/list on the hive answers 200 with the hive's token
    And GET /v1/ready on the worker answers 401 with the hive's token
    And GET /v1/ready on the worker answers 200 with the worker's token

  Scenario: Every registered route that is not a health check refuses a request without a token
    When I stream a native task through the queen with the queen's token
    Then every route the queen, hive and worker register answers 401 without a token, except health

  Scenario: Tokens never reach logs, error messages or command lines
    When I stream a native task through the queen with the queen's token
    And I call GET /v1/models on the queen with the token "wrong-token-0123456789abcdef"
    Then no daemon's command line in /proc contains a token
    And no log contains a token
    And the queen's log names the queen token by its fingerprint
