@p1 @cli
Feature: The operator's model commands go through the queen: pull, show, stop, run
  `rbee pull`, `rbee show`, `rbee stop` and `rbee run` talk to the queen only (its URL and token
  from flags or from RBEE_QUEEN_URL and RBEE_TOKEN_FILE); the queen reaches the hives.

  Scenario: rbee pull downloads a model onto the local node through the queen with a progress bar
    Given a loopback file server that serves the tiny model as "acme/tiny" file "tiny.gguf"
    And a queen on free loopback ports that downloads from the file server
    When I run rbee pull "hf:acme/tiny:tiny.gguf" against the queen
    Then the command exits with code 0
    And stderr shows a progress bar that reached 100%
    And stdout names the pulled file and its SHA-256
    And the hive's catalog lists "hf:acme/tiny:tiny.gguf" with the served file's size

  Scenario: rbee pull for a node the queen does not know fails with NODE_NOT_FOUND
    Given a loopback file server that serves the tiny model as "acme/tiny" file "tiny.gguf"
    And a queen on free loopback ports that downloads from the file server
    When I run rbee pull "hf:acme/tiny:tiny.gguf" against the queen for node "nowhere"
    Then the command exits with code 1
    And stderr names the error code "NODE_NOT_FOUND"
    And the file server got 0 GET requests for "tiny.gguf"

  Scenario: rbee show prints the model's architecture, parameters, quantisation, context, template, size and where it runs
    Given a queen on free loopback ports
    And the tiny model has answered one request through the queen
    When I run rbee show for the tiny model against the queen
    Then the command exits with code 0
    And stdout shows the tiny model's architecture, parameter count, file type, context length and size
    And stdout says whether the model has a chat template
    And stdout names the worker that runs it on node "localhost"

  Scenario: rbee show for a model no node holds fails with MODEL_NOT_FOUND
    Given a queen on free loopback ports
    When I run rbee show for model "hf:nobody/nothing:none.gguf" against the queen
    Then the command exits with code 1
    And stderr names the error code "MODEL_NOT_FOUND"

  Scenario: rbee stop MODEL stops every worker of that model
    Given a queen on free loopback ports
    And the tiny model has answered one request through the queen
    When I run rbee stop for the tiny model against the queen
    Then the command exits with code 0
    And the queen lists no worker within 10 seconds

  Scenario: rbee stop WORKER stops that worker
    Given a queen on free loopback ports
    And the tiny model has answered one request through the queen
    When I run rbee stop for the tiny model's worker id against the queen
    Then the command exits with code 0
    And the queen lists no worker within 10 seconds

  Scenario: rbee stop for a name that is neither a running model nor a worker fails with WORKER_NOT_FOUND
    Given a queen on free loopback ports
    When I run rbee stop for "nothing-runs-this" against the queen
    Then the command exits with code 1
    And stderr names the error code "WORKER_NOT_FOUND"

  Scenario: rbee run keeps the conversation: the second turn's prompt holds the first turn
    Given a queen on free loopback ports
    When I chat with the tiny model in rbee run, saying "Hello there" and then "And then?"
    Then the command exits with code 0
    And rbee run printed two answers
    And the second turn's prompt was longer than the first turn's prompt and answer together

  Scenario: Ctrl+C in rbee run stops the answer, not the session
    Given a queen on free loopback ports
    When I start rbee run with the tiny model and ask for a long answer
    And I press Ctrl+C in rbee run once tokens are printed
    Then the queen's worker reports all slots free within 1 second
    And rbee run still answers "Next question" and exits with code 0 at the end of its input

  Scenario: Client commands read the queen's URL and token file from RBEE_QUEEN_URL and RBEE_TOKEN_FILE
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I run rbee status with only RBEE_QUEEN_URL and RBEE_TOKEN_FILE set
    Then the command exits with code 0
    And stdout shows node "localhost"

  Scenario: rbee infer reads the prompt from stdin when --prompt is not given
    Given a queen on free loopback ports
    When I pipe "Once upon a time" into rbee infer for the tiny model with 8 max tokens at temperature 0
    Then the command exits with code 0
    And it printed the same answer as rbee infer given --prompt "Once upon a time" with 8 max tokens at temperature 0
    And it printed a different answer from rbee infer given --prompt "Far far away" with 8 max tokens at temperature 0

  Scenario: rbee show for a model table alias shows the alias, its model's facts and its worker
    Given a queen whose config file's model table gives "tiny-chat" the tiny model
    And the alias "tiny-chat" has answered one request through the queen
    When I run rbee show for model "tiny-chat" against the queen
    Then the command exits with code 0
    And stdout shows the alias "tiny-chat" of the tiny model
    And stdout names the worker that runs it on node "localhost"
