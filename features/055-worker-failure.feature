@p1 @lifecycle
Feature: A worker that dies mid-stream is reported, not hidden
  The queen ends the client's stream with an error event and keeps serving.

  Scenario: A worker killed mid-stream ends the native stream with a WORKER_CRASHED error event
    Given a queen on free loopback ports
    And a long native task is streaming through the queen
    When the queen's worker is killed with SIGKILL
    Then the stream ends with an error event with code "WORKER_CRASHED"
    And the queen still answers its health check

  Scenario: A model that llama.cpp cannot load is reported as WORKER_START_FAILED
    Given a queen on free loopback ports
    And a file with the GGUF magic but garbage after it
    When I post a native task for that file
    Then the answer is status 503 with error code "WORKER_START_FAILED" and a correlation id
    And the hive lists no worker within 2 seconds
    And the queen still answers its health check
