@p0 @lifecycle
Feature: Stopping rbee leaves no process behind
  `rbee up` runs the queen and a local hive in the foreground; however it is stopped, it
  stops everything it started, workers included.

  Scenario Outline: Stopping `rbee up` with <signal> stops the queen, the hive and the workers
    Given `rbee up` is running on free loopback ports
    And a worker for the tiny model has served a task through it
    When I send <signal> to `rbee up`
    Then `rbee up` exits with code 0 within 20 seconds of the signal
    And no process it started is still running

    Examples:
      | signal  |
      | SIGTERM |
      | SIGINT  |

  Scenario: Stopping the queen while a stream is running ends the stream and leaves nothing
    Given `rbee up` is running on free loopback ports
    And a long native task is streaming through the queen
    When I send SIGTERM to `rbee up`
    Then the stream ends within 10 seconds of the signal
    And `rbee up` exits with code 0 within 20 seconds of the signal
    And no process it started is still running

  Scenario: A queen client that disconnects frees the worker's slot
    Given a queen on free loopback ports
    And a long native task is streaming through the queen
    When the client disconnects
    Then the queen's worker reports all slots free within 1 second
