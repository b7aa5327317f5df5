@p0 @security
Feature: Bind policy and token files
  Loopback without a token is dev mode; anything else needs a token from a file only its
  owner can read, a systemd credential, or (with a warning) the environment. SIGHUP reloads.

  Scenario Outline: A daemon refuses a non-loopback bind without a token
    When I start `rbee <daemon>` on 0.0.0.0 without a token
    Then it exits with code 1 saying it refuses to listen without a token

    Examples:
      | daemon |
      | queen  |
      | hive   |
      | worker |

  Scenario: A queen on loopback without a token runs in dev mode and says so
    Given a queen on free loopback ports
    Then the queen's log says it runs in dev mode

  Scenario Outline: A queen refuses a token file that is <problem>
    Given a queen token file that is <problem>
    When I start `rbee queen` with that token file
    Then it exits with code 1 and its message mentions "<hint>"
    And its message does not contain the token

    Examples:
      | problem                | hint           |
      | readable by the group  | chmod 600      |
      | readable by others     | mode 0604      |
      | missing                | does not exist |
      | empty                  | is empty       |
      | whitespace only        | is empty       |
      | two lines              | exactly one    |
      | too short              | 16 to 256      |

  Scenario: A token from a systemd credential directory is used
    Given the queen token is a systemd credential
    And a queen with those tokens on free loopback ports
    Then GET /v1/models on the queen answers 200 with the queen's token
    And the queen's log says its token comes from "systemd credential queen-token"

  Scenario: A token from the environment works with a warning
    Given the queen token is in the environment variable RBEE_QUEEN_TOKEN
    And a queen with those tokens on free loopback ports
    Then GET /v1/models on the queen answers 200 with the queen's token
    And the queen's log warns that the token comes from the environment

  Scenario: SIGHUP swaps the token without dropping a stream in flight
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    And a long native task is streaming through the queen with the queen's token
    When the queen token file gets a new token
    And I send SIGHUP to the queen
    Then GET /v1/models on the queen answers 401 with the old queen token within 5 seconds
    And GET /v1/models on the queen answers 200 with the new queen token
    And the long task still ends with an "end" event

  Scenario: A bad token file on SIGHUP keeps the old token
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When the queen token file is made readable by others
    And I send SIGHUP to the queen
    Then the queen's log says the token reload failed
    And GET /v2/workers/list on the queen answers 200 with the queen's token

  Scenario: rbee infer authenticates with a token file
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I run `rbee infer` against the queen with the queen's token file
    Then `rbee infer` exits 0 and printed tokens
    When I run `rbee infer` against the queen without a token
    Then `rbee infer` exits 1 and says "MISSING_API_KEY"
