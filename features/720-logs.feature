@p2 @observability
Feature: Structured logs that follow a task across daemons
  Logs are human-readable by default and JSON lines with --log-format json; every line names its
  component and, where there is one, the correlation id, task id and worker id. `rbee logs` reads
  a node's hive and worker logs through the queen.

  Scenario Outline: A task can be followed across queen, hive and worker logs by its correlation id (<format> logs)
    Given a queen on free loopback ports started with "--log-format <format>"
    When I stream a native task through the queen with a correlation id of my own
    Then the queen's, the hive's and the worker's logs each have a <format> line with that correlation id
    And the worker's line with that correlation id also names the task id and the worker id

    Examples:
      | format |
      | text   |
      | json   |

  Scenario: With --log-format json every line of the queen, its hive and its worker is a JSON object
    Given a queen on free loopback ports started with "--log-format json"
    When I stream a native task through the queen with a correlation id of my own
    Then every line of the queen's, the hive's and the worker's logs is a JSON object with time, level, component and message

  Scenario: rbee logs prints a node's hive and worker logs and follows new lines
    Given a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    When I run `rbee logs --node localhost`
    Then it exits 0 and printed lines from the hive's log and from the worker's log
    When I start `rbee logs --node localhost --follow --lines 1` and it prints its first line
    And I stream a native task through the queen with a correlation id of my own
    Then the following `rbee logs` prints a line with that correlation id within 10 seconds
    And it exits 130 after Ctrl+C

  Scenario: rbee logs for a node the queen does not know fails with NODE_NOT_FOUND
    Given a queen on free loopback ports
    When I run `rbee logs --node nowhere`
    Then it exits 1 and stderr says "no node of that name is registered"
