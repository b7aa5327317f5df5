@p1 @openai
Feature: OpenAI structured output, log probabilities, sampling fields and n through the official openai client
  `response_format`, `logprobs`, `top_logprobs`, the penalties, `logit_bias`, `seed`, llama-server's
  `top_k` / `min_p` / `repeat_penalty` and `n` each change the answer as OpenAI documents, or are
  refused with 400 naming the field. The tiny random-weight model is enough: a grammar makes the
  structure certain whatever the weights.

  Background:
    Given a queen on free loopback ports whose workers have 4 slots

  Scenario: A json_object answer is a JSON object and finishes with stop
    When the openai client asks for a chat completion with response_format json_object
    Then the answer parses as a JSON object
    And every choice finished with "stop"

  Scenario: A json_schema answer parses and matches its schema
    When the openai client asks for a chat completion with the person json_schema and seed 7
    Then the answer parses and matches the person schema
    And every choice finished with "stop"

  Scenario: A streamed json_schema answer parses and matches its schema
    When the openai client streams a chat completion with the person json_schema and seed 11
    Then the streamed answer parses and matches the person schema
    And every streamed choice finished with "stop"

  Scenario: The async client gets a json_schema answer too
    When the async openai client asks for a chat completion with the person json_schema and seed 9
    Then the answer parses and matches the person schema
    And every choice finished with "stop"

  Scenario: A text completion honours response_format too
    When the openai client asks for a text completion with the person json_schema and seed 3
    Then the answer parses and matches the person schema

  Scenario: The SDK's parse helper fills a pydantic model
    When the openai client parses a chat completion into the Person pydantic model
    Then the parsed answer is a Person

  Scenario: A structured answer cut by max_tokens finishes with length
    When the openai client asks for a chat completion with the person json_schema and 3 max tokens
    Then every choice finished with "length"

  Scenario: A schema rbee cannot turn into a grammar is refused naming response_format
    When the openai client asks for a chat completion with a json_schema of an unknown type
    Then the openai client got 400 naming the field "response_format"

  Scenario: Chat log probabilities come with every token and the alternatives asked for
    When the openai client asks for a chat completion of 8 tokens with logprobs and 3 top_logprobs
    Then every chat token has a log probability and 3 alternatives, the likeliest first
    And the chat tokens spell the answer

  Scenario: Streamed chat log probabilities come with the chunks
    When the openai client streams a chat completion of 8 tokens with logprobs and 2 top_logprobs
    Then every streamed chat token has a log probability and 2 alternatives

  Scenario: Completion log probabilities carry tokens, their offsets and the alternatives
    When the openai client asks for a text completion of 8 tokens with logprobs 4
    Then the completion logprobs list every token with its offset and 4 alternatives

  Scenario: Streamed completion log probabilities carry tokens and offsets
    When the openai client streams a text completion of 8 tokens with logprobs 1
    Then the streamed completion logprobs list every token with its offset and 1 alternative

  Scenario: Without logprobs no log probabilities are sent
    When the openai client asks for a chat completion of the tiny model with 6 max tokens
    Then the choice has no log probabilities

  Scenario: n=3 gives three choices and usage counts all of them
    When the openai client asks for 3 chat choices of 10 tokens at temperature 1 with seed 5
    Then there are 3 choices with indexes 0 to 2 that differ
    And the usage counts the completion tokens of every choice

  Scenario: n=3 streamed carries each chunk's choice index and ends every choice
    When the openai client streams 3 text choices of 10 tokens at temperature 1 with seed 5
    Then the streamed chunks carry the indexes 0 to 2 and each choice has a finish reason

  Scenario: n choices each follow a json_schema
    When the openai client asks for 3 chat choices with the person json_schema
    Then every choice parses and matches the person schema

  Scenario: A seeded request repeats exactly
    When the openai client asks twice for a chat completion at temperature 1.2 with seed 42
    Then both answers are the same

  Scenario: Seed -1 asks for a random seed, as llama-server takes it
    When the openai client asks for a chat completion at temperature 1 with seed -1
    Then the completion has one choice with an assistant message

  Scenario: logit_bias -100 keeps a token out of a greedy answer
    When the openai client asks for a greedy text completion and then bans its longest token with logit_bias -100
    Then the second answer's tokens do not include the banned one

  Scenario: logit_bias +100 forces a token
    When the openai client asks for a text completion with logit_bias +100 on the token " hello"
    Then every token of the answer is " hello"

  Scenario: top_k 1 gives the greedy answer whatever the temperature
    When the openai client asks for a greedy chat completion and one at temperature 2 with top_k 1
    Then both answers are the same

  Scenario: Penalties change a greedy answer
    When the openai client asks for a greedy text completion and one with presence_penalty 2 and frequency_penalty 2 and repeat_penalty 3
    Then the answers differ

  Scenario Outline: A bad <field> is refused with 400 naming it
    When the openai client posts a <route> completion with <field> set to <value>
    Then the openai client got 400 naming the field "<field>"

    Examples:
      | route | field             | value                                   |
      | chat  | top_k             | -1                                      |
      | chat  | min_p             | 1.5                                     |
      | chat  | repeat_penalty    | 0                                       |
      | chat  | presence_penalty  | 2.5                                     |
      | chat  | frequency_penalty | -3                                      |
      | chat  | logit_bias        | {"hello": 1}                            |
      | chat  | logit_bias        | {"5": 101}                              |
      | chat  | logit_bias        | {"999999": 1}                           |
      | chat  | seed              | -2                                      |
      | chat  | top_logprobs      | 21                                      |
      | chat  | top_logprobs      | 2                                       |
      | text  | logprobs          | 6                                       |
      | chat  | logprobs          | 3                                       |
      | chat  | n                 | 0                                       |
      | chat  | n                 | 17                                      |
      | chat  | n                 | 5                                       |
      | text  | best_of           | 2                                       |
      | text  | echo              | true                                    |
      | chat  | response_format.type | {"type": "xml"}                      |
      | chat  | response_format   | {"type": "json_schema"}                 |
      | chat  | response_format.json_schema.name | {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}} |
      | chat  | response_format   | {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "integer", "minimum": 0}}} |
      | chat  | store             | true                                    |
      | text  | metadata          | {"team": "a"}                           |
      | chat  | service_tier      | "flex"                                  |
      | chat  | modalities        | ["text", "audio"]                       |
      | chat  | audio             | {"voice": "alloy", "format": "wav"}     |
      | chat  | prediction        | {"type": "content", "content": "x"}     |
      | chat  | web_search_options | {}                                     |
      | chat  | reasoning_effort  | "low"                                   |
      | chat  | verbosity         | "low"                                   |
      | text  | suffix            | " the end"                              |

  Scenario: The native API refuses n other than 1
    When I post the native task body {"model": "default", "prompt": "Once", "n": 2}
    Then the answer is status 400 with error code "INVALID_REQUEST" and a correlation id
