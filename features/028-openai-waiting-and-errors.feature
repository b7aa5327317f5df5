@p1 @openai
Feature: While a request waits, its stream says why; errors in OpenAI's shape; one model by id
  A streaming request that waits at the queen gets SSE comment lines clients ignore:
  `: queued position=N eta_s=S` while in the admission queue and `: loading N%` while its worker
  loads. The stream opens at the first of those, so failures before it (a full queue, bad input)
  are still HTTP statuses. Every response carries the wait in X-Rbee-Queue-Wait-Ms. Every error
  body is rbee's and OpenAI's at once (`type`, `param`), and `/v1/models/{id}` answers one model.

  Scenario: A streaming request that finds the only slot busy is told its place, then streams
    Given a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When a streaming chat completion for the tiny model is sent without waiting for its answer
    Then within 10 seconds that stream has sent the comment "queued position=1" and no event
    When I cancel that first task at the queen
    Then that stream carries text chunks after its queued comments and ends with [DONE]
    And its X-Rbee-Queue-Wait-Ms header is a whole number above 0

  Scenario: Once requests of the model have finished, a queued stream is told its estimated wait
    Given a queen on free loopback ports whose workers have 1 slot
    And 2 native tasks for the tiny model have run to their end
    And a long native task is streaming through the queen
    When a streaming chat completion for the tiny model is sent without waiting for its answer
    Then within 10 seconds that stream has sent a comment "queued position=1 eta_s=S" with S a whole number above 0
    When I cancel that first task at the queen
    Then that stream carries text chunks after its queued comments and ends with [DONE]

  Scenario: The openai client streams through the queued comments
    Given a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When the openai client streams a chat completion of the tiny model in the background
    And its request has waited in the queen's admission queue for 1 second
    And I cancel that first task at the queen
    Then the openai client's stream carried text and a finish reason
    And the raw stream it read held a "queued position=1" comment before the first chunk

  Scenario: A cold start streams its worker's loading progress as comments, then tokens
    Given daemons start with RBEE_FAULTS set to "slow-load-step=250"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And a queen on free loopback ports
    When the openai client streams a chat completion of the tiny model in the background
    Then the openai client's stream carried text and a finish reason
    And the raw stream it read held at least 2 different "loading N%" comments, N never falling

  Scenario: A native task that waits past the admission wait limit ends its stream with QUEUE_TIMEOUT
    Given daemons start with RBEE_ADMISSION_WAIT_MAX_S set to "3"
    And a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When another native task for the tiny model is posted
    Then the answer is an event stream with queued comments ending in an error event "QUEUE_TIMEOUT"

  Scenario: A full admission queue is still an HTTP 429 for a streaming openai request
    Given daemons start with RBEE_ADMISSION_QUEUE_DEPTH set to "0"
    And a queen on free loopback ports whose workers have 1 slot
    And a long native task is streaming through the queen
    When the openai client streams a chat completion of the tiny model
    Then the openai client raised a RateLimitError with code "QUEUE_FULL" and type "rate_limit_error"

  Scenario: A validation error names the field in OpenAI's param and keeps rbee's keys
    Given a queen on free loopback ports
    When the openai client asks for a chat completion with temperature 9
    Then the openai client raised a BadRequestError with code "INVALID_REQUEST" and type "invalid_request_error"
    And the error's param is "temperature"
    And the error body keeps rbee's details and a correlation id

  Scenario: A response without streaming carries the time it waited
    Given a queen on free loopback ports
    When the openai client asks for a raw chat completion of the tiny model
    Then its X-Rbee-Queue-Wait-Ms header is a whole number of at least 0

  Scenario: One model is retrieved by its id, also an id holding ':' and '/'
    Given a queen on free loopback ports
    When the openai client asks for a chat completion of the tiny model with 4 max tokens
    And the openai client retrieves the model "default"
    Then the retrieved model is "default" in OpenAI's shape
    When the openai client retrieves the tiny model by its file:// id
    Then the retrieved model is the tiny model in OpenAI's shape

  Scenario: An unknown model id is a 404 in OpenAI's error shape
    Given a queen on free loopback ports
    When the openai client retrieves the model "no-such-model"
    Then the openai client raised a NotFoundError with code "MODEL_NOT_FOUND" and type "not_found_error"
    And the error's param is null
