@p1 @lifecycle
Feature: A worker that dies mid-stream is reported, not hidden
  The queen ends the client's stream with an error event and keeps serving.

  Scenario: A worker killed mid-stream ends the native stream with a WORKER_CRASHED error event
    Given a queen on free loopback ports
    And a long native task is streaming through the queen
    When the queen's worker is killed with SIGKILL
    Then the stream ends with an error event with code "WORKER_CRASHED"
    And the queen still answers its health check

  Scenario: A file with the GGUF magic but a garbage header is refused before any spawn
    Given a queen on free loopback ports
    And a file with the GGUF magic but garbage after it
    When I post a native task for that file
    Then the answer is status 400 with error code "NOT_A_GGUF" and a correlation id
    And the hive lists no worker within 2 seconds
    And the queen still answers its health check

  Scenario: A model that llama.cpp cannot load is reported as WORKER_START_FAILED
    Given a queen on free loopback ports
    And a GGUF file whose header is intact but whose tensor data is cut off
    When I post a native task for that file
    Then the answer is status 503 with error code "WORKER_START_FAILED" and a correlation id
    And the hive lists no worker within 2 seconds
    And the queen still answers its health check

  Scenario: A worker that dies before its first token is replaced without the client noticing
    Given daemons start with RBEE_FAULTS set to "crash-before-token-once={workdir}/crash-flag"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a queen on free loopback ports
    And a worker for the tiny model has served a task through the queen
    And the file "crash-flag" exists in the scenario folder
    When I post a native task for the tiny model with prompt "Hello" and 8 max tokens
    Then the answer is an event stream with status 200
    And the first event is "started" and names the task
    And the last event is "end" with between 1 and 8 tokens out
    And the queen's worker has restarted 1 time
    And the queen counts no request in flight

  Scenario: The openai client surfaces a worker crash mid-stream as an error
    Given a queen on free loopback ports
    When the openai client streams a long completion and the worker is killed after the first chunk
    Then the openai client raised an API error mentioning "WORKER_CRASHED"
    And the queen counts no request in flight
