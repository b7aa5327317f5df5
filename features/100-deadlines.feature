@p1 @lifecycle @deadlines
Feature: Request deadlines across every hop
  `X-Request-Deadline` (RFC 3339 or epoch milliseconds) is forwarded unchanged from the queen
  to the worker; the queen sets one when it is absent; expiry cancels the work downstream.

  Scenario: A task whose deadline has already passed is refused at admission
    Given a queen on free loopback ports
    When I post a native task with a deadline 5 seconds in the past
    Then the answer is status 504 with error code "DEADLINE_EXCEEDED" and a correlation id

  Scenario: A worker refuses a request whose deadline has passed
    Given a worker serving the tiny model with 1 slot
    When I post an inference to the worker with a deadline 5 seconds in the past
    Then the answer is status 504 with error code "DEADLINE_EXCEEDED" and a correlation id

  Scenario Outline: A malformed deadline is refused with 400 INVALID_DEADLINE
    Given a queen on free loopback ports
    When I post a native task with the deadline header "<value>"
    Then the answer is status 400 with error code "INVALID_DEADLINE" and a correlation id

    Examples:
      | value                |
      | tomorrow             |
      | 2026-11-21T10:00:00  |
      | 12345                |

  Scenario: The deadline reaches the worker unchanged, in either form
    Given a queen on free loopback ports
    When I post a native task with a deadline 60 seconds ahead as epoch milliseconds
    Then the worker saw exactly the deadline header I sent
    When I post a native task with a deadline 60 seconds ahead as RFC 3339
    Then the worker saw exactly the deadline header I sent

  Scenario: Without a deadline the queen sets its default one
    Given daemons start with RBEE_REQUEST_DEADLINE_S set to "120"
    And a queen on free loopback ports
    When I post a native task for the tiny model with prompt "Hi" and 4 max tokens
    Then the worker saw a deadline about 120 seconds ahead

  Scenario: A deadline that passes mid-stream ends the stream with an error event and frees the slot
    Given daemons start with RBEE_FAULTS set to "slow=5"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When I post a long native task with a deadline 1 seconds ahead
    Then the stream ends with an error event with code "DEADLINE_EXCEEDED"
    And the queen's worker reports all slots free within 1 second

  Scenario: A worker stuck in its decode loop cannot hold a request past its deadline
    Given daemons start with RBEE_FAULTS set to "stall-after=20"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_STALL_TIMEOUT_S set to "60"
    And a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When I post a long native task with a deadline 2 seconds ahead
    Then the stream ends with an error event with code "DEADLINE_EXCEEDED"
    And the stream ended within 4 seconds of the request
