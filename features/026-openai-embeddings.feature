@p1 @openai
Feature: OpenAI embeddings through the official openai client
  `POST /v1/embeddings` is served by a worker loaded for embeddings (a pooled llama.cpp context);
  generation requests for the same model never land on it, and embedding requests never land on
  a generation worker.

  Background:
    Given a queen on free loopback ports

  Scenario: A cold start spawns an embedding worker that returns a unit vector
    When the openai client embeds "The quick brown fox" with the tiny model as floats
    Then the answer holds 1 embedding of 64 dimensions
    And every embedding has unit norm
    And the usage counts the input's tokens
    And the queen lists 1 embedding and 0 generation workers of the tiny model

  Scenario: Float and base64 encodings decode to the same vector
    When the openai client embeds "The quick brown fox" with the tiny model as floats
    And the openai client embeds "The quick brown fox" with the tiny model as base64
    And the openai client embeds "The quick brown fox" with the tiny model in its default encoding
    Then the base64 embedding decodes to the float embedding
    And the default-encoding embedding equals the float embedding

  Scenario: A list of inputs gives one vector each, in order
    When the openai client embeds the inputs "alpha beta", "gamma", "alpha beta" with the tiny model
    Then the answer holds 3 embeddings with indexes 0, 1 and 2
    And every embedding has unit norm
    And embeddings 0 and 2 are identical and embedding 1 differs
    And embedding 1 equals the embedding of "gamma" alone

  Scenario: Token-id inputs are embedded like the text they spell
    When the openai client embeds "alpha beta" with the tiny model as floats
    And the openai client embeds the token ids of "alpha beta" with the tiny model
    Then the token-id embedding equals the text embedding

  Scenario: A chat request for a model with an embedding worker is served by a generation worker
    Given the openai client embedded "The quick brown fox" with the tiny model
    When the openai client asks for a chat completion of the tiny model with 12 max tokens
    Then the completion has one choice with an assistant message
    And the queen lists 1 embedding and 1 generation workers of the tiny model
    And the embedding worker refuses a generation with 409 "WRONG_WORKER_KIND"

  Scenario: An embedding request for a model with a generation worker spawns an embedding worker
    Given the openai client asked for a chat completion of the tiny model
    When the openai client embeds "The quick brown fox" with the tiny model as floats
    Then the answer holds 1 embedding of 64 dimensions
    And the queen lists 1 embedding and 1 generation workers of the tiny model
    And the generation worker refuses embeddings with 409 "WRONG_WORKER_KIND"

  Scenario Outline: Bad embedding input is refused with 400 naming the field
    When the openai client asks for embeddings of the tiny model with <body>
    Then the embedding request was refused with 400 "<code>" naming "<field>"

    Examples:
      | body                                        | code            | field           |
      | input []                                    | INVALID_REQUEST | input           |
      | input ["text", [1, 2]]                      | INVALID_REQUEST | input           |
      | input [[-1]]                                | INVALID_REQUEST | input           |
      | input [[1000000]]                           | INVALID_REQUEST | input           |
      | encoding_format "hex"                       | INVALID_REQUEST | encoding_format |
      | dimensions 12                               | INVALID_REQUEST | dimensions      |
      | an input of 9000 token ids                  | INPUT_TOO_LONG  | input           |

  Scenario: An input longer than the embedding context is refused with both counts
    When the openai client asks for embeddings of the tiny model with an input of 9000 token ids
    Then the error details give 9000 input tokens against a context of 8192 tokens
