@p1 @security @audit
Feature: Tamper-evident audit log in the queen and the hive
  Append-only JSON Lines with a SHA-256 chain, mode 0600; prompts are stored as hashes;
  `rbee audit verify` proves a log intact or names the first bad record.

  Background:
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports

  Scenario: A task leaves a verifiable trail in the queen's and the hive's audit logs
    When I stream a native task through the queen with the queen's token
    And I call GET /v1/models on the queen with the token "wrong-token-0123456789abcdef"
    And the queen is stopped with SIGTERM
    Then `rbee audit verify` on the queen's audit log exits 0
    And `rbee audit verify` on the hive's audit log exits 0
    And the queen's audit log has records "auth.success, auth.failure, task.submitted, task.completed, node.registered"
    And the hive's audit log has records "auth.success, worker.spawn, worker.stop"
    And the audit task records hold the prompt's SHA-256 and never its text or a token
    And every audit file is mode 0600

  Scenario: An embedding request leaves its inputs' SHA-256 in the queen's audit log, never their text
    When I request embeddings of "a secret sentence" through the queen with the queen's token
    And the queen is stopped with SIGTERM
    Then `rbee audit verify` on the queen's audit log exits 0
    And the queen's audit log has records "embedding.submitted, embedding.completed"
    And the audit embedding records hold the inputs' SHA-256 and never their text

  Scenario: SIGHUP is recorded as a config reload
    When I send SIGHUP to the queen
    Then the queen's audit log has a "config.reload" record

  Scenario Outline: A <tampering> queen audit log fails verification, naming the bad record
    When I stream a native task through the queen with the queen's token
    And the queen is stopped with SIGTERM
    And the queen's audit log is tampered with: <tampering>
    Then `rbee audit verify` on the queen's audit log exits 1 naming line <line>

    Examples:
      | tampering                 | line |
      | edited                    | 2    |
      | reordered                 | 2    |
      | truncated in the middle   | 2    |

  Scenario: The chain holds across size rotation and a queen restart
    Given daemons start with RBEE_AUDIT_MAX_BYTES set to "1500"
    When I stream a native task through the queen with the queen's token
    And the queen is stopped with SIGTERM
    And the queen is started again with the same tokens and data
    And I stream a native task through the queen with the queen's token
    And the queen is stopped with SIGTERM
    Then `rbee audit verify` on the queen's audit log exits 0
    And the queen's audit log spans more than 1 file
