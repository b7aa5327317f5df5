@p0 @cli
Feature: `rbee infer` streams answers to the terminal
  Background:
    Given a queen on free loopback ports

  Scenario: rbee infer prints the answer and exits 0
    When I run rbee infer for the tiny model with prompt "Once upon a time" and 16 max tokens
    Then the command exits with code 0
    And it printed text on stdout

  Scenario: rbee infer reports a refused task on stderr and exits 1
    When I run rbee infer for model "no-such-model"
    Then the command exits with code 1
    And stderr names the error code "MODEL_NOT_FOUND"

  Scenario: rbee infer reports an unreachable queen on stderr and exits 1
    When I run rbee infer against a queen that is not running
    Then the command exits with code 1
    And stderr says the queen cannot be reached

  Scenario: Ctrl+C in rbee infer cancels the task and exits 130
    When I start rbee infer for a long answer from the tiny model
    And I press Ctrl+C once tokens are printed
    Then the command exits with code 130
    And the queen's worker reports all slots free within 1 second
