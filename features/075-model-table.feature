@p1 @models
Feature: The model table: aliases with their own model and settings
  The queen's config file maps aliases to a model ref and how its workers and requests run
  (context per slot, slots, backend, chat template, default sampling, replicas, keep-alive).
  Clients send the alias as `model`; `/v1/models` lists the aliases that can run.

  Scenario: A chat completion naming an alias is served by a worker of the alias's model
    Given a queen whose config file's model table gives "tiny-chat" the tiny model
    When the openai client asks for a chat completion of "tiny-chat" with 4 max tokens
    Then the completion names the model "tiny-chat" and has an assistant message
    And the hive lists one worker of the alias "tiny-chat" running the tiny model

  Scenario: An alias's context per slot and slots reach its worker
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "ctx_size: 1024, slots: 3"
    When the openai client asks for a chat completion of "tiny-chat" with 4 max tokens
    Then the worker of "tiny-chat" reports a context of 1024 tokens per slot and 3 slots in its /health
    And the hive lists the worker of "tiny-chat" with ctx_size 1024 and 3 slots

  Scenario: An alias's default max_tokens limits a completion that gives none
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "sampling: {max_tokens: 3}"
    When the openai client asks for a text completion of "tiny-chat" ignoring end of text
    Then the completion counts 3 completion tokens and finished with "length"

  Scenario: A request's own max_tokens wins over its alias's default
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "sampling: {max_tokens: 3}"
    When the openai client asks for a text completion of "tiny-chat" ignoring end of text with 7 max tokens
    Then the completion counts 7 completion tokens and finished with "length"

  Scenario: An alias's default seed makes two answers at temperature 1 equal
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "sampling: {seed: 11, temperature: 1.0, max_tokens: 16}"
    When the openai client asks twice for a text completion of "tiny-chat" giving no seed
    Then both answers are the same

  Scenario: An alias's chat template is the one its chat prompts are rendered with
    Given a queen whose config file's model table gives "plain" and "padded" the tiny model, "padded" with a chat template that adds 200 words
    When the openai client asks "plain" and "padded" each for a chat completion of 2 max tokens
    Then the prompt of "padded" counts at least 150 more tokens than the prompt of "plain"

  Scenario: An alias's backend is the one its requests run on
    Given a queen whose config file's model table gives "tiny-gpu" the tiny model with "backend: cuda"
    When the openai client asks for a chat completion of "tiny-gpu" with 4 max tokens, failing
    Then the openai client got an error with code "BACKEND_UNAVAILABLE"

  Scenario: /v1/models lists an alias with its settings
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "ctx_size: 1024, slots: 3, owned_by: lab, sampling: {temperature: 0.3}"
    When the openai client lists the models with their objects
    Then the model "tiny-chat" is owned by "lab" with a context length of 1024
    And the model "tiny-chat" lists slots 3, backend "auto", the tiny model as ref and temperature 0.3

  Scenario: /v1/models leaves out default and its aliases on a cluster that cannot install it
    Given the hive cannot import the default model's package
    And a queen whose config file's model table gives "tiny-chat" the tiny model and "gemma" the model "default"
    When the openai client lists the models with their objects
    Then the model list has "tiny-chat" and neither "default" nor "gemma"

  Scenario: GET /v1/models/{id} gives one alias with its settings
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "ctx_size: 1024"
    When the openai client retrieves the model "tiny-chat"
    Then the retrieved model is "tiny-chat" with a context length of 1024

  Scenario: GET /v1/models/{id} of a name the cluster cannot run answers 404 MODEL_NOT_FOUND
    Given a queen whose config file's model table gives "tiny-chat" the tiny model
    When I call GET /v1/models/no-such-alias on the queen without a token
    Then the queen answered 404 with the OpenAI error code "MODEL_NOT_FOUND"

  Scenario Outline: An alias's max_replicas caps its workers at <cap> under load the cluster would spread over 4
    Given daemons start with RBEE_GPU_MAX_REPLICAS set to "4"
    And daemons start with RBEE_GPU_REPLICA_AFTER_WAIT_S set to "0.2"
    And a queen whose config file's model table gives "tiny-chat" the tiny model with "slots: 1, ctx_size: 4096, max_replicas: <cap>"
    When 4 long completions of "tiny-chat" run at once
    Then the hive started <cap> workers of "tiny-chat"

    Examples:
      | cap |
      | 1   |
      | 2   |

  Scenario: An idle worker of an alias with keep_alive_s stops after that long
    Given a queen whose config file's model table gives "tiny-chat" the tiny model with "keep_alive_s: 1"
    When the openai client asks for a chat completion of "tiny-chat" with 4 max tokens
    Then within 15 seconds the hive lists no worker of "tiny-chat"
    And the hive's log says the worker stopped after being idle for 1s

  Scenario: A key limited to an alias may use it, is refused the alias's ref, and lists only the alias
    Given token files for the queen, the hive and the worker
    And a queen with those tokens whose config file's model table gives "tiny-chat" the tiny model
    And a key "narrow" with scopes "inference" for the model "tiny-chat" only
    Then the key "narrow" gets a chat completion of "tiny-chat"
    And the key "narrow" is refused the tiny model with 403 "MODEL_NOT_ALLOWED"
    And the key "narrow" lists only the model "tiny-chat"

  Scenario: A model table with an unknown key stops the queen naming the key
    Given a queen config file whose model table gives "tiny-chat" the tiny model with "ctx_sise: 1024"
    When I start `rbee queen` with that config file and wait for it to exit
    Then the queen exited with code 1 naming "queen.models.tiny-chat.ctx_sise: unknown key (did you mean `ctx_size`?)"

  Scenario: An edited model table with a bad value is refused on SIGHUP naming the key, and the old table serves on
    Given a queen whose config file's model table gives "tiny-chat" the tiny model
    When the model table is edited to give "tiny-chat" "slots: 0" and the queen gets SIGHUP
    Then the queen's log names "queen.models.tiny-chat.slots" as the reason the reload failed
    And the openai client asks for a chat completion of "tiny-chat" with 4 max tokens
    And the completion names the model "tiny-chat" and has an assistant message

  Scenario: SIGHUP applies an edited model table: a new alias serves
    Given a queen whose config file's model table gives "tiny-chat" the tiny model
    When the model table is edited to add "tiny-two" with the tiny model and the queen gets SIGHUP
    And the openai client asks for a chat completion of "tiny-two" with 4 max tokens
    Then the completion names the model "tiny-two" and has an assistant message
