@p0 @inference @openai
Feature: OpenAI-compatible API through the official openai client
  The official `openai` Python client works against the queen unchanged.

  Background:
    Given a queen on free loopback ports

  Scenario: A chat completion without streaming returns an assistant message
    When the openai client asks for a chat completion of the tiny model with 12 max tokens
    Then the completion has one choice with an assistant message
    And the usage counts between 1 and 12 completion tokens

  Scenario: A chat completion streams chunks as they are produced
    When the openai client streams a chat completion of the tiny model with 12 max tokens
    Then the first chunk names the assistant role
    And the chunks carry text
    And the last chunk has a finish reason

  Scenario: A text completion without streaming returns text
    When the openai client asks for a text completion of the tiny model with 12 max tokens
    Then the completion has one choice with text
    And the usage counts between 1 and 12 completion tokens

  Scenario: A text completion streams chunks as they are produced
    When the openai client streams a text completion of the tiny model with 12 max tokens
    Then the chunks carry text
    And the last chunk has a finish reason

  Scenario: The model list names the default model
    When the openai client lists the models
    Then the model list contains "default"

  Scenario: The openai client sees a structured error for bad input
    When the openai client asks for a chat completion with temperature 9
    Then the openai client raised a bad request error with code "INVALID_REQUEST"
