@p1 @inference @backends
Feature: Backend policy on every route
  A request runs on its own `backend`, else on the queen's `model_backends` entry for its model,
  else on the queen's `backend` (default `auto`: a usable GPU, else the CPU), on the OpenAI routes
  and on /v2/tasks alike. A named backend the node lacks is refused, never served on the CPU.
  These scenarios run on a node without a GPU.

  Scenario: An OpenAI chat completion without a backend is served on the CPU of a node without a GPU
    Given a queen on free loopback ports
    When the openai client asks for a chat completion of the tiny model with 4 max tokens
    Then the completion has one choice with an assistant message
    And the queen lists the worker of the tiny model on backend "cpu" with no device

  Scenario: The native stream's started event names the backend and device of its worker
    Given a queen on free loopback ports
    When I post a native task for the tiny model with prompt "Once" and 4 max tokens
    Then the answer is an event stream with status 200
    And the started event names backend "cpu" and device null

  Scenario: A native task asking for cuda on a node without a GPU is refused and starts no worker
    Given a queen on free loopback ports
    When I post a native task for the tiny model on backend "cuda"
    Then the answer is status 400 with error code "BACKEND_UNAVAILABLE" and a correlation id
    And the error message says "the cuda backend cannot be used"
    And the queen's hive started no worker

  Scenario: model_backends naming cuda for a model refuses its OpenAI requests the same way
    Given the queen's model_backends names "cuda" for the tiny model
    And a queen on free loopback ports
    When the openai client asks for a chat completion of the tiny model and is refused
    Then the openai client raised a bad request error with code "BACKEND_UNAVAILABLE"
    And the openai error message says "the cuda backend cannot be used"
    And the queen's hive started no worker
